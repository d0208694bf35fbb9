"""`bertclf compare`: test accuracy of tfidf / cnn / rnn / han / bigru / finetune on one dataset.

For each arch, the configuration with the best mean validation accuracy on that dataset (over
its seeds: runs of the same code, source data and params but `train.seed`) among those run with the most
seeds is taken from `dvc exp show`, so one lucky seed does not displace a three-seed mean;
TF-IDF + logistic regression comes from the tfidf metrics of the same split; "<arch> + tfidf"
rows are the combine stage's interpolation of the two (λ in the table), picked by their own
validation accuracy.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bertclf import tasks
from bertclf.atomic import atomic_path
from bertclf.errors import BertclfError
from bertclf.experiments.study import experiments, score
from bertclf.models import ARCHS
from bertclf.plotting import pyplot, save_figure, write_csv

COMBINED = " + tfidf"  # the arch's probabilities interpolated with TF-IDF's (the combine stage)
ORDER = ("tfidf", *(name for arch in ARCHS for name in (arch, f"{arch}{COMBINED}")))


def _split_key(params: dict[str, Any]) -> str:
    return json.dumps({"data": params.get("data", {}), "split": params.get("split", {})}, sort_keys=True)


def _config_key(exp: dict[str, Any]) -> str:
    """What makes runs the same configuration: every param but `train.seed` and `runtime` (how to
    compute, never what), and the content of the code and source data the stages read, as DVC
    hashed them, so runs of the same code at two commits (one changed only docs) are one
    configuration. A run without those hashes falls back on its baseline commit."""
    params = {k: v for k, v in exp["params"].items() if k != "runtime"}
    params["train"] = {k: v for k, v in params.get("train", {}).items() if k != "seed"}
    inputs = exp.get("inputs") or {}
    code = inputs if inputs and all(inputs.values()) else {"baseline": exp.get("baseline")}
    return json.dumps({"code": code, "params": params}, sort_keys=True, default=str)


def _summary(model: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for the seeds of one configuration: mean and standard deviation (n - 1) of each score."""
    def stats(key: str) -> tuple[float | None, float | None]:
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            return None, None
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)

    names = [r["experiment"] for r in runs]
    row = {**runs[0], "arch": model, "seeds": len(runs),
           "experiment": ", ".join(names) if len(names) <= 3 else f"{names[0]} and {len(names) - 1} more"}
    row["val_acc"], row["val_std"] = stats("val_acc")
    row["test_acc"], row["test_std"] = stats("test_acc")
    lambdas = [r["lambda"] for r in runs if r.get("lambda") is not None]
    row["lambda"] = statistics.fmean(lambdas) if lambdas else None
    return row


def _rank(row: dict[str, Any]) -> tuple[int, float, str]:
    """More seeds first, then the mean validation headline score, the better the higher (RMSE:
    the lower); the name only breaks exact ties."""
    return row["seeds"], tasks.ranked(row.get("metric", "acc"), row["val_acc"] or 0.0), row["experiment"]


def dataset_tasks(dataset: str) -> set[str]:
    """The kinds of label (data.task) the finished experiments on `dataset` were run for."""
    found = set()
    for exp in experiments(all_commits=True):
        data = exp["params"].get("data", {})
        if exp["state"] == "success" and data.get("name") == dataset:
            found.add(data.get("task") or tasks.SINGLE)
    return found


def compare_rows(dataset: str, task: str | None = None) -> list[dict[str, Any]]:
    """Per model on `dataset` (the workspace, commits and experiments), the configuration with the
    best mean validation accuracy over its seeds among those with the most seeds, plus the TF-IDF
    floor. A configuration's runs share the code and every param but `train.seed`; one run per
    seed counts."""
    groups: dict[tuple[str, str], dict[Any, dict[str, Any]]] = {}
    tfidf_row: dict[str, Any] | None = None
    for exp in experiments(all_commits=True):
        params = exp["params"]
        metric = tasks.HEADLINE.get(params.get("data", {}).get("task", tasks.SINGLE), "acc")  # acc, qwk…
        test_acc = score(exp, "eval", "test", metric)
        if exp["state"] != "success" or params.get("data", {}).get("name") != dataset or test_acc is None:
            continue
        if task is not None and (params.get("data", {}).get("task") or tasks.SINGLE) != task:
            continue  # another kind of label on the same texts (IMDB's polarity and its ratings)
        arch = params.get("train", {}).get("arch")
        row = {"arch": arch, "experiment": exp["name"], "kind": exp["kind"], "metric": metric,
               "val_acc": score(exp, "eval", "val", metric), "test_acc": test_acc,
               "test_subsampled": bool(score(exp, "eval", "test", "subsampled")),
               "split": _split_key(params), "max_train": params.get("split", {}).get("max_train")}
        tfidf = score(exp, "tfidf", "tfidf")
        if tfidf and (tfidf_row is None or exp["name"] < tfidf_row["experiment"]):
            tfidf_row = {**row, "arch": "tfidf", "val_acc": tfidf.get(f"val_{metric}"),
                         "test_acc": tfidf.get(f"test_{metric}"), "seeds": 1}
        if arch not in ARCHS:
            continue
        candidates = [row]
        both = score(exp, "combine", "combine")
        if both and both.get(f"val_{metric}") is not None:
            candidates.append({**row, "arch": f"{arch}{COMBINED}", "val_acc": both[f"val_{metric}"],
                               "test_acc": both[f"test_{metric}"], "lambda": both.get("lambda")})
        seed = params.get("train", {}).get("seed")
        for cand in candidates:
            by_seed = groups.setdefault((cand["arch"], _config_key(exp)), {})
            # the same run is listed as the workspace, its commit and its experiment: keep the name
            if seed not in by_seed or (by_seed[seed]["kind"] != "experiment" and exp["kind"] == "experiment"):
                by_seed[seed] = cand
    best: dict[str, dict[str, Any]] = {"tfidf": tfidf_row} if tfidf_row else {}
    for (model, _), by_seed in groups.items():
        row = _summary(model, sorted(by_seed.values(), key=lambda r: r["experiment"]))
        if model not in best or _rank(row) > _rank(best[model]):
            best[model] = row
    return [best[a] for a in ORDER if a in best]


def _pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{mean * 100:.2f}" + ("" if std is None else f" ± {std * 100:.2f}")


def write_compare(dataset: str, out_dir: Path = Path("reports"), task: str | None = None) -> Path:
    """reports/compare_<dataset>.{md,csv,png} (``compare_<dataset>_<task>`` for a dataset with
    experiments of several kinds of label, which are never ranked together)."""
    kinds = dataset_tasks(dataset)
    if task is None and len(kinds) > 1:
        raise BertclfError(f"{dataset} has experiments of {len(kinds)} kinds of label "
                           f"({', '.join(sorted(kinds))}), whose scores do not compare: pass --task")
    rows = compare_rows(dataset, task)
    if not rows:
        raise BertclfError(f"no finished experiments on {dataset}: run `dvc exp run -S data.name={dataset}`")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (f"compare_{dataset}_{task}" if len(kinds) > 1 else f"compare_{dataset}")
    write_csv(stem.with_suffix(".csv"), rows, ["arch", "experiment", "seeds", "val_acc", "val_std",
                                               "test_acc", "test_std", "lambda", "test_subsampled",
                                               "max_train"])
    # the headline score of the dataset's task: accuracy, Jaccard (multi-label) or QWK (ordinal)
    name, short = {"jaccard": ("Jaccard", "Jaccard"), "qwk": ("quadratic weighted kappa", "QWK"),
                   "rmse": ("RMSE", "RMSE")}.get(rows[0].get("metric", "acc"), ("accuracy", "acc"))
    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    accs = [r["test_acc"] * 100 for r in rows]
    colors = {"tfidf": "tab:gray"}
    ax.bar([r["arch"].replace(COMBINED, "\n+ tfidf") for r in rows], accs,
           color=[colors.get(r["arch"], "tab:orange" if COMBINED in r["arch"] else "tab:blue") for r in rows])
    for i, a in enumerate(accs):
        ax.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(max(0, min(accs) - 10), 100)
    ax.set_ylabel(f"test {name} (%)")
    ax.set_title(f"{dataset}: best-on-validation experiment per model")
    save_figure(fig, stem.with_suffix(".png"))
    split_note = "" if len({r["split"] for r in rows}) == 1 else (
        "\n\n**Note:** these experiments do not all share the same split settings.")
    lines = [f"# {dataset}: model comparison", "",
             f"Per model, the configuration best on mean validation {name} among those run with the "
             "most seeds; with several seeds, mean ± standard deviation over them.", "",
             f"| model | experiments | seeds | val {short} (%) | test {short} (%) | λ (TF-IDF weight) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lam = "" if r.get("lambda") is None else f"{r['lambda']:.2f}"
        val, test = _pct(r["val_acc"], r.get("val_std")), _pct(r["test_acc"], r.get("test_std"))
        lines.append(f"| {r['arch']} | `{r['experiment']}` | {r.get('seeds', 1)} | {val} | {test} | {lam} |")
    if any(r["test_subsampled"] for r in rows):
        split_note += "\n\nThe test set is subsampled (`split.max_test`)."
    with atomic_path(stem.with_suffix(".md")) as tmp:
        text = "\n".join(lines) + split_note + f"\n\n![test {name}]({stem.name}.png)\n"
        tmp.write_text(text, encoding="utf-8")
    return stem.with_suffix(".md")
