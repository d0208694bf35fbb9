"""Study definitions, variants, selection on validation only, and a deterministic report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import bertclf.experiments.study as study_mod
import bertclf.experiments.study_report as report_mod
from bertclf.errors import ConfigError
from bertclf.experiments.study import load_study, select_best, set_args, variants

REPO = Path(__file__).resolve().parents[1]

STUDY = """
name: tiny
base: {data.name: r8}
factors:
  han.dropout: [0.0, 0.5]
  han.depth: [1, 2]
seeds: [1, 2]
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "tiny.yaml").write_text(STUDY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_one_factor_at_a_time_variants(workdir: Path) -> None:
    study = load_study(Path("tiny.yaml"))
    runs = variants(study)
    # base dropout is params.yaml's 0.5 and base depth 1: per seed the base + dropout 0.0 + depth 2
    assert [v.name for v in runs] == ["tiny-base-s1", "tiny-dropout-0.0-s1", "tiny-depth-2-s1",
                                      "tiny-base-s2", "tiny-dropout-0.0-s2", "tiny-depth-2-s2"]
    moved = runs[2]
    assert moved.overrides == {"data.name": "r8", "train.seed": 1, "han.dropout": 0.5, "han.depth": 2}
    assert set_args({"han.residual": True, "han.norm": "layer", "split.max_test": None}) == [
        "-S", "han.residual=true", "-S", "han.norm=layer", "-S", "split.max_test=null"]


def test_a_factor_context_is_applied_and_shared_runs_are_not_repeated(workdir: Path) -> None:
    (workdir / "ctx.yaml").write_text("""
name: ctx
factors:
  han.depth: [1, 2]
  han.residual: {values: [false, true], with: {han.depth: 2}}
""")
    runs = variants(load_study(Path("ctx.yaml")))
    # residual=false at depth 2 is the depth-2 run already: only residual=true is added
    assert [v.name for v in runs] == ["ctx-base-s42", "ctx-depth-2-s42", "ctx-residual-true-depth2-s42"]
    assert runs[2].overrides == {"train.seed": 42, "han.depth": 2, "han.residual": True}


def test_grid_covers_every_combination(workdir: Path) -> None:
    (workdir / "grid.yaml").write_text(STUDY.replace("name: tiny", "name: g") + "grid: true\n")
    runs = variants(load_study(Path("grid.yaml")))
    assert len(runs) == 2 * 2 * 2
    assert {(v.overrides["han.dropout"], v.overrides["han.depth"]) for v in runs} == {
        (0.0, 1), (0.0, 2), (0.5, 1), (0.5, 2)}


def test_bad_study_files_are_refused(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text("factors: {train.nope: [1, 2]}\n")
    with pytest.raises(ConfigError, match=r"train\.nope"):
        load_study(Path("bad.yaml"))
    (workdir / "empty.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="factors"):
        load_study(Path("empty.yaml"))


def fake_experiments(study: Any, val: dict[str, float], test: dict[str, float]) -> list[dict[str, Any]]:
    out = []
    for v in variants(study):
        params: dict[str, Any] = {"data": {"name": "r8"}, "han": {"dropout": 0.5, "depth": 1}}
        for key, value in v.overrides.items():
            section, name = key.split(".")
            params.setdefault(section, {})[name] = value
        key = v.name.rsplit("-s", 1)[0]
        out.append({"name": v.name, "rev": v.name, "kind": "experiment", "state": "success",
                    "params": params,
                    "metrics": {"eval": {"val": {"acc": val[key] + v.seed / 1000},
                                         "test": {"acc": test[key]}},
                                "tfidf": {"tfidf": {"test_acc": 0.9}},
                                "train": {"best_epoch": 2}}})
    return out


def test_selection_uses_validation_only_and_report_is_deterministic(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = load_study(Path("tiny.yaml"))
    # depth 2 is best on validation; dropout 0.0 is best on test, which must not matter
    val = {"tiny-base": 0.90, "tiny-dropout-0.0": 0.91, "tiny-depth-2": 0.95}
    test = {"tiny-base": 0.90, "tiny-dropout-0.0": 0.99, "tiny-depth-2": 0.93}
    exps = fake_experiments(study, val, test)
    final = {"name": "tiny-final", "rev": "f", "kind": "experiment", "state": "success", "params": {},
             "metrics": {"eval": {"val": {"acc": 0.951}, "test": {"acc": 0.931, "subsampled": False}},
                         "tfidf": {"tfidf": {"test_acc": 0.9}}}}
    monkeypatch.setattr(study_mod, "experiments", lambda all_commits=False: [*exps, final])
    monkeypatch.setattr(report_mod, "experiments", lambda all_commits=False: [*exps, final])
    curve = [{"epoch": 1.0, "train_loss": 1.0, "val_loss": 0.9, "val_acc": 0.5},
             {"epoch": 2.0, "train_loss": 0.5, "val_loss": 0.6, "val_acc": 0.7}]
    monkeypatch.setattr(report_mod, "_loss_curves", lambda rev: curve)

    best = select_best(study)
    assert best["config"] == {"han.dropout": 0.5, "han.depth": 2}
    assert best["overrides"]["train.seed"] == 1 and best["overrides"]["data.name"] == "r8"
    assert best["val_acc"] == pytest.approx(0.95 + 0.0015)

    out = report_mod.write_report(study, workdir / "reports", workdir / "metrics")
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert set(files) == {"README.md", "val_acc.csv", "val_acc.png", "loss_dropout.png", "loss_depth.png"}
    text = files["README.md"].decode()
    assert "| `2` | 2 | 95.15 ± 0.07 | 93.00 ± 0.00 |" in text
    assert "**test accuracy 93.10 %**" in text
    assert "**han.depth**: best on validation is `2`" in text
    summary = json.loads((workdir / "metrics/study_tiny.json").read_text())
    assert summary["final_test_acc"] == 0.931 and summary["best_config"]["han.depth"] == 2

    report_mod.write_report(study, workdir / "reports", workdir / "metrics")  # again: nothing changes
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == files


def test_compare_takes_the_best_configuration_per_arch_over_its_seeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bertclf.experiments.compare as compare_mod

    def exp(name: str, arch: str, val: float, test: float, dataset: str = "r8", seed: int = 42,
            dropout: float = 0.5, kind: str = "experiment", baseline: str = "c1", code: str = "h1",
            combined: tuple[float, float, float] | None = None) -> dict[str, Any]:
        metrics: dict[str, Any] = {"eval": {"val": {"acc": val}, "test": {"acc": test}},
                                   "tfidf": {"tfidf": {"val_acc": 0.95, "test_acc": 0.96}}}
        if combined:
            lam, val_both, test_both = combined
            metrics["combine"] = {"combine": {"lambda": lam, "val_acc": val_both, "test_acc": test_both}}
        return {"name": name, "rev": name, "kind": kind, "state": "success", "baseline": baseline,
                "inputs": {"src/bertclf/models/han.py": code, "inputs/data": "d1"},
                "params": {"data": {"name": dataset}, "split": {"seed": 42},
                           "train": {"arch": arch, "seed": seed}, "han": {"dropout": dropout},
                           "runtime": {"threads": seed}},
                "metrics": metrics}

    exps = [
        # han, dropout 0.5, three seeds (one of them also listed as the workspace): mean val 0.98
        exp("workspace", "han", 0.97, 0.95, kind="workspace", baseline="workspace"),
        exp("a1", "han", 0.97, 0.95, combined=(0.4, 0.99, 0.97)),
        exp("a1", "han", 0.97, 0.95, kind="commit", combined=(0.4, 0.99, 0.97)),
        exp("a2", "han", 0.98, 0.96, seed=7, combined=(0.2, 0.98, 0.98)),
        # (run at a later commit that changed no code: the same configuration)
        exp("a3", "han", 0.99, 0.97, seed=1, baseline="c2", combined=(0.3, 0.97, 0.99)),
        # han, dropout 0.1: one lucky seed is above the mean of the three above on validation...
        exp("b", "han", 0.985, 0.90, dropout=0.1, combined=(0.1, 0.975, 0.91)),
        # ...and the same params run by other code are another configuration
        exp("old", "han", 0.999, 0.80, seed=5, baseline="c0", code="h0"),
        # with as many seeds, validation decides
        exp("c", "cnn", 0.93, 0.99), exp("d", "finetune", 0.99, 0.98),
        exp("d2", "finetune", 0.995, 0.97, dropout=0.1),
        exp("e", "han", 0.999, 0.999, dataset="webkb"),
    ]
    monkeypatch.setattr(compare_mod, "experiments", lambda all_commits=False: exps)
    rows = {r["arch"]: r for r in compare_mod.compare_rows("r8")}
    assert list(rows) == ["tfidf", "cnn", "han", "han + tfidf", "finetune"]
    # a lucky single seed does not displace a three-seed mean
    assert rows["han"]["experiment"] == "a1, a2, a3" and rows["han"]["seeds"] == 3
    assert rows["han"]["val_acc"] == pytest.approx(0.98) and rows["han"]["test_acc"] == pytest.approx(0.96)
    assert rows["finetune"]["experiment"] == "d2"
    both = rows["han + tfidf"]
    assert both["experiment"] == "a1, a2, a3" and both["seeds"] == 3
    assert both["val_acc"] == pytest.approx(0.98) and both["test_acc"] == pytest.approx(0.98)
    assert both["test_std"] == pytest.approx(0.01) and both["lambda"] == pytest.approx(0.3)
    text = compare_mod.write_compare("r8", tmp_path).read_text()
    assert "| han + tfidf | `a1, a2, a3` | 3 | 98.00 ± 1.00 | 98.00 ± 1.00 | 0.30 |" in text
    assert "| cnn | `c` | 1 | 93.00 | 99.00 |  |" in text
    assert (tmp_path / "compare_r8.png").stat().st_size > 0


def test_compare_ranks_multi_label_experiments_by_jaccard(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On a multi-label dataset the headline is validation Jaccard, for the models, TF-IDF and the mix."""
    import bertclf.experiments.compare as compare_mod

    def exp(name: str, arch: str, val: float, test: float) -> dict[str, Any]:
        return {"name": name, "rev": name, "kind": "experiment", "state": "success", "baseline": "c1",
                "inputs": {}, "params": {"data": {"name": "semeval2018_ec", "task": "multi_label"},
                                         "train": {"arch": arch, "seed": 42}},
                "metrics": {"eval": {"val": {"jaccard": val, "acc": 0.1}, "test": {"jaccard": test}},
                            "tfidf": {"tfidf": {"val_jaccard": 0.5, "test_jaccard": 0.49}},
                            "combine": {"combine": {"lambda": 0.3, "val_jaccard": val + 0.01,
                                                    "test_jaccard": test + 0.01}}}}

    runs = [exp("f", "finetune", 0.6, 0.58), exp("h", "han", 0.55, 0.54)]
    monkeypatch.setattr(compare_mod, "experiments", lambda all_commits=False: runs)
    rows = {r["arch"]: r for r in compare_mod.compare_rows("semeval2018_ec")}
    assert rows["tfidf"]["test_acc"] == 0.49 and rows["finetune"]["val_acc"] == 0.6
    assert rows["finetune + tfidf"]["test_acc"] == pytest.approx(0.59)
    text = compare_mod.write_compare("semeval2018_ec", tmp_path).read_text()
    assert "mean validation Jaccard" in text and "| val Jaccard (%) | test Jaccard (%) |" in text
    assert "| finetune | `f` | 1 | 60.00 | 58.00 |  |" in text
