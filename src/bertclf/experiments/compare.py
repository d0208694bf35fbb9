"""`bertclf compare`: test accuracy of tfidf / cnn / rnn / han / bigru / finetune on one dataset.

For each arch, the experiment with the best validation accuracy on that dataset (and the same
split settings) is taken from `dvc exp show`; TF-IDF + logistic regression comes from the
tfidf metrics of the same split; "<arch> + tfidf" rows are the combine stage's interpolation of
the two (λ in the table), picked by their own validation accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertclf.atomic import atomic_path
from bertclf.errors import BertclfError
from bertclf.experiments.study import experiments, score
from bertclf.models import ARCHS
from bertclf.plotting import pyplot, save_figure, write_csv

COMBINED = " + tfidf"  # the arch's probabilities interpolated with TF-IDF's (the combine stage)
ORDER = ("tfidf", *(name for arch in ARCHS for name in (arch, f"{arch}{COMBINED}")))


def _split_key(params: dict[str, Any]) -> str:
    return json.dumps({"data": params.get("data", {}), "split": params.get("split", {})}, sort_keys=True)


def compare_rows(dataset: str) -> list[dict[str, Any]]:
    """Best-on-validation run per arch on `dataset` (the workspace, commits and experiments), plus
    the TF-IDF floor."""
    best: dict[str, dict[str, Any]] = {}
    for exp in experiments(all_commits=True):
        params = exp["params"]
        test_acc = score(exp, "eval", "test", "acc")
        if exp["state"] != "success" or params.get("data", {}).get("name") != dataset or test_acc is None:
            continue
        arch = params.get("train", {}).get("arch")
        row = {"arch": arch, "experiment": exp["name"], "val_acc": score(exp, "eval", "val", "acc"),
               "test_acc": test_acc, "test_subsampled": bool(score(exp, "eval", "test", "subsampled")),
               "split": _split_key(params), "max_train": params.get("split", {}).get("max_train")}
        candidates = [row]
        both = score(exp, "combine")
        if arch in ARCHS and both and both.get("val") and both.get("test"):
            candidates.append({**row, "arch": f"{arch}{COMBINED}", "val_acc": both["val"]["acc"],
                               "test_acc": both["test"]["acc"], "lambda": both.get("lambda")})
        for cand in candidates:
            key = cand["arch"]
            if arch in ARCHS and (key not in best or (cand["val_acc"], cand["experiment"]) >
                                  (best[key]["val_acc"], best[key]["experiment"])):
                best[key] = cand
        tfidf = score(exp, "tfidf", "tfidf")
        if tfidf and ("tfidf" not in best or exp["name"] < best["tfidf"]["experiment"]):
            best["tfidf"] = {**row, "arch": "tfidf", "val_acc": tfidf.get("val_acc"),
                             "test_acc": tfidf.get("test_acc")}
    return [best[a] for a in ORDER if a in best]


def write_compare(dataset: str, out_dir: Path = Path("reports")) -> Path:
    """reports/compare_<dataset>.{md,csv,png}."""
    rows = compare_rows(dataset)
    if not rows:
        raise BertclfError(f"no finished experiments on {dataset}: run `dvc exp run -S data.name={dataset}`")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"compare_{dataset}"
    write_csv(stem.with_suffix(".csv"), rows, ["arch", "experiment", "val_acc", "test_acc", "lambda",
                                               "test_subsampled", "max_train"])
    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    accs = [r["test_acc"] * 100 for r in rows]
    colors = {"tfidf": "tab:gray"}
    ax.bar([r["arch"].replace(COMBINED, "\n+ tfidf") for r in rows], accs,
           color=[colors.get(r["arch"], "tab:orange" if COMBINED in r["arch"] else "tab:blue") for r in rows])
    for i, a in enumerate(accs):
        ax.text(i, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(max(0, min(accs) - 10), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{dataset}: best-on-validation experiment per model")
    save_figure(fig, stem.with_suffix(".png"))
    split_note = "" if len({r["split"] for r in rows}) == 1 else (
        "\n\n**Note:** these experiments do not all share the same split settings.")
    lines = [f"# {dataset}: model comparison", "",
             "| model | experiment | val acc (%) | test acc (%) | λ (TF-IDF weight) |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        val = "" if r["val_acc"] is None else f"{r['val_acc'] * 100:.2f}"
        lam = "" if r.get("lambda") is None else f"{r['lambda']:.2f}"
        lines.append(f"| {r['arch']} | `{r['experiment']}` | {val} | {r['test_acc'] * 100:.2f} | {lam} |")
    if any(r["test_subsampled"] for r in rows):
        split_note += "\n\nThe test set is subsampled (`split.max_test`)."
    with atomic_path(stem.with_suffix(".md")) as tmp:
        text = "\n".join(lines) + split_note + f"\n\n![test accuracy]({stem.name}.png)\n"
        tmp.write_text(text, encoding="utf-8")
    return stem.with_suffix(".md")
