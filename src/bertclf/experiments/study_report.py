"""`bertclf study report`: tables, plots and a short analysis of a finished study.

Everything is derived from the experiments DVC stored (`dvc exp show --json` and each
experiment's loss series under `plots/train/`), sorted, and written without timestamps, so running the report
again on the same experiments rewrites the same files.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from bertclf import tasks
from bertclf.atomic import atomic_path, write_json
from bertclf.experiments.study import (
    FINAL,
    Study,
    base_config,
    expected_config,
    experiments,
    score,
    select_best,
    study_runs,
)
from bertclf.plotting import pyplot, save_figure, write_csv

TRAIN_SERIES = "plots/train/metrics"  # dvclive's per-epoch series of the train stage


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean: float, std: float, n: int, scale: float = 100.0) -> str:
    return f"{mean * scale:.2f}" + (f" ± {std * scale:.2f}" if n > 1 else "")


def factor_table(study: Study, runs: list[dict[str, Any]], factor: str) -> list[dict[str, Any]]:
    """One row per value of `factor`: runs that differ from the base in that factor only
    (one-at-a-time studies), or every run with that value (grids: marginal means)."""
    base = base_config(study)
    rows = []
    for value in study.factors[factor]:
        if study.grid:
            chosen = [r for r in runs if r["config"][factor] == value]
        else:
            expected = expected_config(study, factor, value)
            chosen = [r for r in runs if r["config"] == expected]
        val, val_sd = _mean_std([r["val_acc"] for r in chosen])
        test, test_sd = _mean_std([r["test_acc"] for r in chosen])
        best_epoch, _ = _mean_std([r["best_epoch"] for r in chosen])
        rows.append({"factor": factor, "value": value, "is_base": value == base[factor],
                     "n": len(chosen),
                     "val_acc": val, "val_std": val_sd, "test_acc": test, "test_std": test_sd,
                     "best_epoch": best_epoch, "runs": [r["name"] for r in chosen]})
    return rows


def analysis(study: Study, tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One sentence per factor, drawn only from the table's numbers."""
    lines = []
    noise = max((r["val_std"] for t in tables.values() for r in t if r["n"] > 1), default=None)
    for factor, rows in tables.items():
        rows = [r for r in rows if r["n"]]
        if len(rows) < 2:
            continue
        best = max(rows, key=lambda r: r["val_acc"])
        worst = min(rows, key=lambda r: r["val_acc"])
        spread = (best["val_acc"] - worst["val_acc"]) * 100
        base = next((r for r in rows if r["is_base"]), None)
        context = study.context.get(factor)
        where = f" (with {', '.join(f'{k}={v}' for k, v in context.items())})" if context else ""
        if spread < 0.005:
            lines.append(f"**{factor}**{where}: every value gives the same validation accuracy "
                         f"({best['val_acc'] * 100:.2f} %).")
            continue
        text = (f"**{factor}**{where}: best on validation is `{best['value']}` "
                f"({best['val_acc'] * 100:.2f} %), "
                f"worst `{worst['value']}` ({worst['val_acc'] * 100:.2f} %), "
                f"a spread of {spread:.2f} points")
        if base is not None and best is not base:
            gain = (best["val_acc"] - base["val_acc"]) * 100
            text += f"; `{best['value']}` is {gain:+.2f} points over `{base['value']}`"
        if noise is not None:
            text += (" — larger than the seed-to-seed std of " if spread > 2 * noise * 100 else
                     " — within twice the seed-to-seed std of ") + f"{noise * 100:.2f} points"
        lines.append(text + ".")
    return lines


def _loss_curves(rev: str) -> list[dict[str, float]]:
    """Train and validation loss per epoch of an experiment, from its dvclive series."""
    import dvc.api

    curves: dict[int, dict[str, float]] = {}
    for split in ("train", "val"):
        text = dvc.api.read(f"{TRAIN_SERIES}/{split}/loss.tsv", rev=rev)
        for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
            epoch = int(row["step"])
            curves.setdefault(epoch, {"epoch": epoch})[f"{split}_loss"] = float(row["loss"])
    return [curves[e] for e in sorted(curves)]


def _plots(study: Study, tables: dict[str, list[dict[str, Any]]], runs: list[dict[str, Any]],
           out: Path) -> None:
    plt = pyplot()
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for ax, (factor, rows) in zip(axes[0], tables.items(), strict=True):
        labels = [str(r["value"]) for r in rows]
        ax.bar(labels, [r["val_acc"] * 100 for r in rows], yerr=[r["val_std"] * 100 for r in rows],
               color=["tab:orange" if r["is_base"] else "tab:blue" for r in rows])
        lo = min(r["val_acc"] for r in rows if r["n"]) * 100
        ax.set_ylim(lo - 2, min(100, max(r["val_acc"] for r in rows if r["n"]) * 100 + 1))
        ax.set_title(factor.split(".")[-1])
        ax.set_ylabel(f"validation {tasks.NAMES[_metric(runs)]} (x 100)" if _metric(runs) != "acc"
                      else "validation accuracy (%)")
    save_figure(fig, out / "val_acc.png")

    by_name = {r["name"]: r for r in runs}
    seed = study.seeds[0]
    for factor, rows in tables.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, row in enumerate(rows):
            name = next((n for n in row["runs"] if by_name[n]["seed"] == seed), None)
            if name is None:
                continue
            curve = _loss_curves(by_name[name]["rev"])
            color = f"C{i}"
            ax.plot([c["epoch"] for c in curve], [c["val_loss"] for c in curve], "-o", color=color,
                    label=f"{row['value']} (val)")
            ax.plot([c["epoch"] for c in curve], [c["train_loss"] for c in curve], "--", color=color,
                    alpha=0.6, label=f"{row['value']} (train)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy")
        ax.set_title(f"{factor}: train (dashed) and validation loss, seed {seed}")
        ax.legend(fontsize=7)
        save_figure(fig, out / f"loss_{factor.split('.')[-1]}.png")


def write_report(study: Study, reports: Path = Path("reports"), metrics: Path = Path("metrics")) -> Path:
    """Write reports/<study>/README.md, CSV and PNGs, and metrics/study_<study>.json."""
    runs = study_runs(study)
    tables = {f: factor_table(study, runs, f) for f in study.factors}
    best = select_best(study)
    final = next((e for e in experiments(all_commits=True)
                  if e["name"] == f"{study.name}-{FINAL}" and e["state"] == "success"), None)
    out = reports / study.name
    out.mkdir(parents=True, exist_ok=True)

    flat = [{k: v for k, v in r.items() if k != "runs"} for t in tables.values() for r in t]
    write_csv(out / "val_acc.csv", flat, ["factor", "value", "is_base", "n", "val_acc", "val_std",
                                          "test_acc", "test_std", "best_epoch"])
    _plots(study, tables, runs, out)

    dataset = runs[0]["dataset"] if runs else "?"
    metric = _metric(runs)  # the task's headline score: accuracy, Jaccard, QWK or RMSE
    name = tasks.NAMES[metric]
    short = "acc (%)" if metric == "acc" else f"{metric} (x 100)"  # the table's scores are x 100

    def shown(value: float) -> str:
        return f"{value * 100:.2f} %" if metric in ("acc", "jaccard") else f"{value:.4f}"
    final_eval = {"val_acc": score(final, "eval", "val", metric),
                  "test_acc": score(final, "eval", "test", metric),
                  "test_subsampled": score(final, "eval", "test", "subsampled")} if final else {}
    summary = {
        "study": study.name,
        "runs": len(runs),
        "best_config": best["config"],
        "selection_val_acc": round(best["val_acc"], 5),
        "final_experiment": f"{study.name}-{FINAL}" if final else None,
        "final_trained_on_val": study.train_on_val,
        "final_val_acc": final_eval.get("val_acc"),
        "final_test_acc": final_eval.get("test_acc"),
        "final_test_subsampled": final_eval.get("test_subsampled"),
        "tfidf_test_acc": score(final, "tfidf", "tfidf", f"test_{metric}") if final else None,
    }
    write_json(metrics / f"study_{study.name}.json", summary)

    md = [f"# Study `{study.name}`", "",
          f"{len(runs)} runs, {'a full grid' if study.grid else 'one factor at a time around the base'}, "
          f"seeds {', '.join(map(str, study.seeds))}. Base (orange in the plot): "
          + ", ".join(f"`{k}={v}`" for k, v in base_config(study).items()) + ".", ""]
    for factor, rows in tables.items():
        context = study.context.get(factor)
        note = [f"All with {', '.join(f'`{k}={v}`' for k, v in context.items())}.", ""] if context else []
        md += [f"## {factor}", "", *note,
               f"| value | runs | val {short} | test {short} | best epoch |",
               "|---|---:|---:|---:|---:|"]
        for r in rows:
            mark = " (base)" if r["is_base"] and factor not in study.context else ""
            md.append(f"| `{r['value']}`{mark} | {r['n']} | "
                      f"{_fmt(r['val_acc'], r['val_std'], r['n'])} | "
                      f"{_fmt(r['test_acc'], r['test_std'], r['n'])} | {r['best_epoch']:.1f} |")
        md += ["", f"![loss curves](loss_{factor.split('.')[-1]}.png)", ""]
    md += [f"## Validation {name} per factor value", "", f"![validation {name}](val_acc.png)", "",
           "Plot data: `val_acc.csv` (`dvc plots show reports/" + study.name + "/val_acc.csv -x value "
           "-y val_acc`).", "", "## What each factor did", ""]
    md += [f"- {line}" for line in analysis(study, tables)]
    md += ["", "## Selection and final test", "",
           f"Selected on validation {name} only: {best['label']} "
           f"(mean val {metric} {shown(best['val_acc'])} over {len(best['runs'])} run(s))."]
    if final:
        md.append(f"Retrained as `{study.name}-{FINAL}`"
                  + (" on train + validation" if study.train_on_val else "")
                  + f" and tested once: **test {name} {shown(final_eval.get('test_acc') or 0)}**"
                  + (" (on a subsampled test set)" if final_eval.get("test_subsampled") else "")
                  + f"; TF-IDF + logistic regression on the same split: "
                  f"{shown(summary['tfidf_test_acc'] or float('nan'))}.")
    else:
        md.append("The final retrain has not run yet (`bertclf study run` does it last).")
    md += ["", f"Dataset: {dataset}. Figures from `dvc exp show`; regenerate with "
           f"`bertclf study report studies/{study.name}.yaml`.", ""]
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    return out


def _metric(runs: list[dict[str, Any]]) -> str:
    """The headline score the study's runs were ranked by (accuracy when there are none yet)."""
    return str(runs[0].get("metric", "acc")) if runs else "acc"
