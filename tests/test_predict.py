"""Using a trained model: `bertclf.load(...).predict`, `bertclf predict` (texts, files, interactive),
and bad input. Every arch is trained on the tiny BERT; prediction from raw text must equal what
`evaluate` computed from the pipeline's precomputed inputs."""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import bertclf
from bertclf.cli import app
from bertclf.data.stores import Inputs
from bertclf.data.tokenization import TokenizeConfig, tokenize_splits
from bertclf.errors import BertclfError
from bertclf.evaluation import evaluate, load_predictions
from bertclf.features import FeaturizeConfig, featurize
from bertclf.model_dir import CONFIG, ModelDir
from bertclf.serving.predict_io import interactive
from tests.conftest import TINY_ARCHS, run_train
from tests.test_token_archs import review

ARCHS = {  # (train.lr, the arch's knobs)
    "han": (1e-2, {"hidden": 8, "attention_dim": 8, "dropout": 0.1}),
    "bigru": (1e-2, {"hidden": 8, "attention_dim": 8, "dropout": 0.1}),
    "finetune": (2e-3, {"layer_lr_decay": 0.9}),
    "cnn": (5e-3, {"embedding_dim": 16, "num_filters": 8, "dropout": 0.1}),
    "rnn": (1e-2, {"embedding_dim": 16, "hidden": 8, "attention_dim": 8, "dropout": 0.1}),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Inputs:
    """Tiny sentiment splits, tokenized (head+tail, 24 tokens) and featurized (mean of last 4 layers)."""
    root = tmp_path_factory.mktemp("predict")
    rng = random.Random(1)
    split = root / "split"
    split.mkdir()
    for name, n in (("train", 400), ("val", 60), ("test", 80)):
        labels = [i % 2 for i in range(n)]
        texts = [review(rng, y) + (" " + review(rng, y) if i % 3 == 0 else "") for i, y in enumerate(labels)]
        pd.DataFrame({"id": [f"{name}{i}" for i in range(n)], "text": texts, "label": labels}).to_parquet(
            split / f"{name}.parquet", index=False)
    (split / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"], "test_subsampled": False}))
    tokenize_splits(split, tiny_bert_dir, root / "tokens",
                    TokenizeConfig(max_length=24, truncation="head_tail", head_tokens=8,
                                   max_sentence_tokens=6))
    # fp32 vectors: the exact-parity checks below compare with bertclf.load's default fp32 path
    featurize(root / "tokens", tiny_bert_dir, root / "features", FeaturizeConfig(layers="mean_last_4",
                                                                                 precision="fp32"))
    return Inputs(root / "features", root / "tokens", tiny_bert_dir)


@pytest.fixture(scope="module", params=list(ARCHS))
def trained(request: pytest.FixtureRequest, data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of each arch, trained and evaluated as the pipeline does; returns its run directory."""
    arch = request.param
    out = tmp_path_factory.mktemp(arch)
    lr, knobs = ARCHS[arch]
    run_train(data, out, train={"arch": arch, "batch_size": 16, "epochs": 6, "patience": 10, "lr": lr},
              **{arch: knobs})
    evaluate(out / "model", data, out / "eval.json", out / "eval",
             out / "predictions")
    return out


def test_predictions_from_raw_text_equal_evaluate(trained: Path, data: Inputs) -> None:
    """Raw text through `bertclf.load(...)` gives the logits `evaluate` computed from the pipeline's
    precomputed inputs, for a model that really separates the classes."""
    test = pd.read_parquet(data.tokens.parent / "split" / "test.parquet")
    expected = load_predictions(trained / "predictions")
    scores = json.loads((trained / "eval.json").read_text())["test"]
    assert scores["acc"] >= 0.9, scores  # a real margin, so a wrong input shows in the logits
    clf = bertclf.load(trained / "model")
    logits = clf.logits(test["text"].tolist())
    want = np.stack(expected["logits"])
    assert np.abs(logits - want).max() < 1e-3 * max(1.0, np.abs(want).max()), np.abs(logits - want).max()
    assert [p.label for p in clf.predict(test["text"].tolist())] == expected["predicted"].tolist()


def test_prediction_carries_probabilities_and_handles_odd_texts(trained: Path) -> None:
    clf = bertclf.load(trained / "model")
    long_text = " ".join(["great"] * 5000)  # far over max_length: truncated, never an error
    preds = clf.predict(["", long_text, "bad awful boring film."])
    assert len(preds) == 3
    for p in preds:
        assert set(p.probabilities) == {"neg", "pos"}
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.probability == max(p.probabilities.values())
    assert clf.predict("one string is one text")[0].label in {"neg", "pos"}
    with pytest.raises(BertclfError, match="text 1 is a int"):
        clf.predict(["fine", 3])  # type: ignore[list-item]


@pytest.fixture(scope="module")
def finetuned(data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finetuned")
    # every epoch kept to the last (train_on_val), so the logits have real margins
    run_train(data, out, train={"arch": "finetune", "batch_size": 16, "epochs": 6, "lr": 2e-3,
                                "train_on_val": True})
    return out / "model"


def test_cli_predict_texts_files_and_interactive(finetuned: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "--model", str(finetuned), "great wonderful film.", "awful."])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if not line.startswith("\t")]
    assert len(lines) == 2 and lines[0].split("\t")[0] in {"neg", "pos"}

    (tmp_path / "in.txt").write_text("great film.\n\nawful plot.\n", encoding="utf-8")
    (tmp_path / "in.csv").write_text('id,body\n1,"great, great film."\n2,awful plot.\n', encoding="utf-8")
    (tmp_path / "in.jsonl").write_text('{"text": "great film."}\n{"text": "awful plot."}\n', encoding="utf-8")
    for src, extra in (("in.txt", []), ("in.csv", ["--text-column", "body"]), ("in.jsonl", [])):
        for out in ("out.csv", "out.jsonl"):
            result = runner.invoke(app, ["predict", "-m", str(finetuned), "--input", str(tmp_path / src),
                                         "--output", str(tmp_path / out), *extra])
            assert result.exit_code == 0, result.output
            rows = (pd.read_csv(tmp_path / out) if out.endswith(".csv")
                    else pd.read_json(tmp_path / out, lines=True))
            assert len(rows) == 2, (src, out)
            kept = ["id"] if src == "in.csv" else []  # the input's other columns come along
            assert list(rows.columns) == [*kept, "text", "label", "probability", "p_neg", "p_pos"]
            assert (rows["p_neg"] + rows["p_pos"]).round(4).eq(1.0).all()

    result = runner.invoke(app, ["predict", "-m", str(finetuned), "--interactive"],
                           input="great wonderful film.\n\nawful boring plot.\n")
    assert result.exit_code == 0, result.output
    answers = result.stdout.splitlines()
    assert "Ctrl-D quits" in result.stderr
    assert len(answers) == 2 and all(a.split()[0] in {"neg", "pos"} for a in answers), result.stdout


def test_interactive_loop_answers_each_line_until_end_of_input(finetuned: Path) -> None:
    clf = bertclf.load(finetuned)
    shown: list[str] = []
    said: list[str] = []
    n = interactive(clf, io.StringIO("good.\n   \nbad.\nnice"), shown.append, top_k=2, say=said.append)
    assert n == 3 and len(shown) == 3 and len(said) == 1  # the banner apart, on stderr
    assert all(len(line.split()) == 4 for line in shown)  # two labels with their probabilities


def test_predict_reads_stdin_and_writes_stdout_keeping_the_input_columns(finetuned: Path,
                                                                         tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "-m", str(finetuned), "-"], input="great film.\n\nawful plot.\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["great film.", "awful plot."] and rows[0]["label"] in {"neg", "pos"}

    src = tmp_path / "in.csv"
    src.write_text('id,body,label\nr1,"great, great film.",pos\nr2,awful plot.,neg\n', encoding="utf-8")
    result = runner.invoke(app, ["predict", "-m", str(finetuned), "-i", str(src), "--text-column", "body",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout))
    assert list(table.columns) == ["id", "input_label", "text", "label", "probability", "p_neg", "p_pos"]
    assert table["id"].tolist() == ["r1", "r2"] and table["input_label"].tolist() == ["pos", "neg"]

    for suffix, read in ((".tsv", lambda p: pd.read_csv(p, sep="\t")), (".parquet", pd.read_parquet),
                         (".jsonl", lambda p: pd.read_json(p, lines=True))):
        out = tmp_path / f"out{suffix}"
        result = runner.invoke(app, ["predict", "-m", str(finetuned), "-i", str(src), "-o", str(out),
                                     "--text-column", "body"])
        assert result.exit_code == 0, result.output
        got = read(out)
        assert got["id"].tolist() == ["r1", "r2"] and got["text"].tolist() == ["great, great film.",
                                                                              "awful plot."], suffix
        assert got["label"].tolist() == table["label"].tolist(), suffix

    headerless = tmp_path / "new.csv"
    headerless.write_text("n1,Great,a wonderful film\nn2,Awful,boring plot\n", encoding="utf-8")
    result = runner.invoke(app, ["predict", "-m", str(finetuned), "-i", str(headerless), "--columns",
                                 "id,title,body", "--text-column", "title", "--text-column", "body"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [("n1", "Great a wonderful film"),
                                                     ("n2", "Awful boring plot")]

    result = runner.invoke(app, ["predict", "-m", str(finetuned), "-i", str(src), "--format", "parquet"])
    assert result.exit_code == 1 and "parquet cannot go to standard output" in result.stderr


def test_version_and_choices_in_help() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"bertclf {bertclf.__version__}"
    result = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert "[default: auto]" in result.stdout
    assert "auto (the GPU if there is one) | cpu | cuda | cuda:N" in result.stdout
    for choices in ("fp32", "bf16", "fp16"), ("jsonl", "csv", "tsv", "parquet"):
        assert "|".join(choices) in result.stdout, choices
    result = runner.invoke(app, ["predict", "--device", "gpu", "x"])
    assert result.exit_code == 2 and "'gpu' is not one of" in result.output


def test_interactive_has_line_editing_and_history(finetuned: Path, tmp_path: Path) -> None:
    """At a real terminal: the left arrow moves the cursor (no ^[[D in the text) and Up recalls the
    previous text; the history outlives the session."""
    import pty
    import select
    import time

    main, child = pty.openpty()
    env = {**os.environ, "BERTCLF_HISTORY": str(tmp_path / "history"), "TERM": "dumb"}
    proc = subprocess.Popen([sys.executable, "-m", "bertclf", "predict", "-m", str(finetuned),
                             "--interactive", "--top-k", "1"], stdin=child, stdout=child, stderr=child,
                            env=env, close_fds=True)
    os.close(child)
    seen = b""

    def read_until(done: Callable[[bytes], bool], timeout: float = 60) -> None:
        nonlocal seen
        end = time.monotonic() + timeout
        while not done(seen) and time.monotonic() < end:
            if select.select([main], [], [], 0.2)[0]:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the other end closed
                    break
                if not chunk:
                    break
                seen += chunk
        assert done(seen), seen[-500:]

    def answered(n: int) -> Callable[[bytes], bool]:
        return lambda out: len(re.findall(rb"\n(?:neg|pos) [0-9.]+\r?\n> ", out)) == n

    read_until(lambda out: b"Ctrl-D quits" in out and out.endswith(b"> "))
    os.write(main, b"great fim\x1b[Dl\x1b[C\r")  # typo fixed with the arrows: "great film"
    read_until(answered(1))
    os.write(main, b"\x1b[A\r")  # Up: the same text again
    read_until(answered(2))
    os.write(main, b"\x04")  # Ctrl-D
    proc.wait(timeout=60)
    os.close(main)
    answers = [line for line in seen.decode(errors="replace").splitlines() if line.startswith(("neg", "pos"))]
    assert proc.returncode == 0 and "^[" not in seen.decode(errors="replace"), seen
    assert len(answers) == 2 and answers[0].split()[-2:] == answers[1].split()[-2:], seen
    assert (tmp_path / "history").read_text().splitlines()[-1] == "great film"


def test_bad_inputs_give_one_clear_line(finetuned: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    result = runner.invoke(app, ["predict", "-m", str(finetuned), "-i", str(bad),
                                 "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 1
    assert "latin1.txt" in result.stderr and "line 2" in result.stderr and "UTF-8" in result.stderr
    assert not (tmp_path / "o.csv").exists()  # no half-written output

    result = runner.invoke(app, ["predict", "-m", str(finetuned), "x", "-o", str(tmp_path / "o.xlsx")])
    assert result.exit_code == 1 and "o.xlsx" in result.stderr

    broken = tmp_path / "broken"
    broken.mkdir()
    result = runner.invoke(app, ["predict", "-m", str(broken), "x"])
    assert result.exit_code == 1 and f"{CONFIG} is missing" in result.stderr

    newer = tmp_path / "newer"
    newer.mkdir()
    for f in finetuned.iterdir():
        (newer / f.name).write_bytes(f.read_bytes())
    config = json.loads((newer / CONFIG).read_text())
    (newer / CONFIG).write_text(json.dumps({**config, "format_version": 99}))
    result = runner.invoke(app, ["predict", "-m", str(newer), "x"])
    assert result.exit_code == 1 and "newer bertclf" in result.stderr
    assert "Traceback" not in result.output


def test_feature_models_without_their_encoder_say_what_is_missing(data: Inputs, tmp_path: Path) -> None:
    run_train(data, tmp_path, train={"arch": "bigru", "batch_size": 16, "epochs": 1},
              bigru={"hidden": 4, "attention_dim": 4})
    for f in (tmp_path / "model" / "encoder").iterdir():
        f.unlink()
    (tmp_path / "model" / "encoder").rmdir()
    with pytest.raises(BertclfError, match="encoder is missing"):
        bertclf.load(tmp_path / "model")


def onnx_ops(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_export_onnx_and_int8_keep_predictions(finetuned: Path, data: Inputs, tmp_path: Path) -> None:
    runner = CliRunner()
    test_file = data.tokens.parent / "split" / "test.parquet"
    test = pd.read_parquet(test_file)
    texts, truth = test["text"].tolist(), test["label"].to_numpy()
    reference = bertclf.load(finetuned)
    ref_logits = reference.logits(texts)
    ref_acc = float((ref_logits.argmax(1) == truth).mean())
    margins = np.abs(ref_logits[:, 1] - ref_logits[:, 0])
    assert ref_acc >= 0.9 and np.median(margins) > 1.0, (ref_acc, np.median(margins))  # a model worth keeping
    for quantize in (None, "int8"):
        out = tmp_path / f"onnx-{quantize}"
        args = ["export", "-m", str(finetuned), "-o", str(out), "--data", str(test_file)]
        result = runner.invoke(app, args + (["--quantize", quantize] if quantize else []))
        assert result.exit_code == 0, result.output
        assert "max |logit difference|" in result.stdout
        parity = json.loads((out / "parity.json").read_text())
        exported = bertclf.load(out)
        assert exported.runtime == "onnx" and exported.labels == reference.labels
        logits = exported.logits(texts)
        agreement = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
        accuracy = float((logits.argmax(1) == truth).mean())
        assert parity["texts"] == len(texts) and parity["agreement"] == pytest.approx(agreement, abs=1e-5)
        assert parity["exported_acc"] == pytest.approx(accuracy, abs=1e-5)
        ops = onnx_ops(out / "model.onnx")
        if quantize is None:
            assert np.abs(logits - ref_logits).max() < 1e-4 and "MatMulInteger" not in ops
        else:  # really quantized, and still the same classifier
            assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
            assert agreement >= 0.95 and ref_acc - accuracy <= 0.01, (agreement, ref_acc, accuracy)
            assert np.corrcoef(logits[:, 1] - logits[:, 0], ref_logits[:, 1] - ref_logits[:, 0])[0, 1] > 0.95
        result = runner.invoke(app, ["predict", "-m", str(out), "great film."])
        assert result.exit_code == 0 and result.stdout.split("\t")[0] in {"neg", "pos"}


def test_export_of_han_runs_its_encoder_on_onnxruntime(data: Inputs, tmp_path: Path) -> None:
    run_train(data, tmp_path, train={"arch": "han", "batch_size": 16, "epochs": 1},
              han={"hidden": 4, "attention_dim": 4})
    test_file = data.tokens.parent / "split" / "test.parquet"
    result = CliRunner().invoke(app, ["export", "-m", str(tmp_path / "model"), "--data", str(test_file)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "model-onnx"
    assert (out / "encoder.onnx").is_file() and not (out / "encoder").exists()
    parity = json.loads((out / "parity.json").read_text())
    assert parity["max_abs_logit_diff"] < 1e-2 and parity["agreement"] == 1.0  # float16 vectors both ways
    assert bertclf.load(out).predict("great film.")[0].label in {"neg", "pos"}


def test_export_refuses_recurrent_archs_clearly(data: Inputs, tmp_path: Path) -> None:
    run_train(data, tmp_path, train={"arch": "rnn", "batch_size": 16, "epochs": 1},
              rnn={"embedding_dim": 8, "hidden": 4, "attention_dim": 4})
    result = CliRunner().invoke(app, ["export", "-m", str(tmp_path / "model")])
    assert result.exit_code == 1 and "export supports cnn, bigru, han, finetune; rnn runs" in result.stderr
    assert not (tmp_path / "model-onnx").exists()


def test_bench_reports_throughput_and_latency_per_batch_size(finetuned: Path, data: Inputs,
                                                            tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "-m", str(finetuned), "--data",
                                      str(data.tokens.parent / "split" / "test.parquet"),
                                      "--batch-sizes", "1,4", "--limit", "12", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert [r["batch_size"] for r in report["results"]] == [1, 4]
    for r in report["results"]:
        assert r["texts"] == 12 and r["samples_per_s"] > 0 and r["latency_ms_p95"] >= r["latency_ms_p50"] > 0
    assert report["results"][0]["padding_fraction"] == 0  # one text per call: nothing to pad
    assert report["threads"] >= 1
    assert "| batch | samples/s |" in (tmp_path / "b.md").read_text() and "| 4 |" in result.stdout


def bertclf_process(*args: str) -> subprocess.CompletedProcess:
    """The installed `bertclf` command in a process of its own, as a user runs it."""
    command = Path(sys.executable).with_name("bertclf")
    return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})


def test_the_real_command_fails_with_one_line_and_no_traceback(finetuned: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    (tmp_path / "empty-model").mkdir()
    cases = {
        ("predict", "-m", str(tmp_path / "empty-model"), "x"): f"{CONFIG} is missing",
        ("predict", "-m", str(tmp_path / "no-such-dir"), "x"): "no such model directory",
        ("predict", "-m", str(finetuned), "-i", str(bad), "-o", str(tmp_path / "o.csv")): "line 2",
        ("export", "-m", str(tmp_path / "empty-model")): f"{CONFIG} is missing",
    }
    for args, expected in cases.items():
        done = bertclf_process(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith("error: ") and expected in lines[0], (args, lines)
    assert not (tmp_path / "o.csv").exists()


# --- hostile text and a hostile environment ------------------------------------------------

FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


def _cells(path: Path) -> list[list[str]]:
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_predictions_csv_cannot_carry_a_spreadsheet_formula(finetuned: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    args = ["predict", "-m", str(finetuned), "-o", str(out), "--", *FORMULAS, "ok film"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    texts = [row[0] for row in _cells(out)[1:]]
    assert texts == ["'" + t for t in FORMULAS] + ["ok film"]  # shown as text, never run

    from bertclf.serving.predict_io import write_predictions

    labels = ["=1+1", "@evil", "plain"]  # label names come from the user's data
    rows = [{"text": "t", "label": "=1+1", "probability": 0.9, "p_=1+1": 0.9, "p_@evil": 0.05,
             "p_plain": 0.05}]
    write_predictions(tmp_path / "labels.csv", rows, labels)
    header, row = _cells(tmp_path / "labels.csv")
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in header + row), (header, row)
    assert row[1] == "'=1+1" and row[2] == "0.9"


def test_every_csv_the_project_writes_goes_through_the_safe_writer(tmp_path: Path) -> None:
    from bertclf.plotting import write_csv

    rows = [{"experiment": f, "arch": "han", "val_acc": -0.5} for f in FORMULAS]
    write_csv(tmp_path / "compare.csv", rows)
    cells = _cells(tmp_path / "compare.csv")
    assert [r[0] for r in cells[1:]] == ["'" + f for f in FORMULAS] and cells[1][2] == "-0.5"
    src = Path(__file__).resolve().parents[1] / "src"
    writers = [str(p.relative_to(src)) for p in src.rglob("*.py")
               if any(w in p.read_text() for w in ("csv.writer(", "csv.DictWriter(", ".to_csv("))]
    assert writers == ["bertclf/plotting.py"], writers  # the one place that neutralises cells


def test_a_missing_text_column_hint_names_the_command_line_option(finetuned: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("body\ngreat film\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", "-m", str(finetuned), "-i", str(src), "-o",
                                      str(tmp_path / "o.csv")])
    assert result.exit_code == 1 and "--text-column" in result.stderr
    assert "data.text_column" not in result.stderr


def test_environment_faults_are_one_line_naming_what_to_do(finetuned: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for f in finetuned.iterdir():
        (truncated / f.name).write_bytes(f.read_bytes())
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    cases = {
        ("predict", "-m", str(truncated), "x"): "model.safetensors",
    }
    if not torch.cuda.is_available():
        cases[("predict", "-m", str(finetuned), "--device", "cuda", "x")] = "CPU build"
    for args, expected in cases.items():
        done = bertclf_process(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith("error: ") and expected in lines[0], (args, lines)
    # -v (or BERTCLF_DEBUG=1) shows the traceback for a bug report
    done = bertclf_process("-v", "predict", "-m", str(truncated), "x")
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_every_model_directory_has_a_model_card(trained: Path) -> None:
    import yaml

    card = (trained / "model" / "README.md").read_text(encoding="utf-8")
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    arch = ModelDir.read(trained / "model").arch
    assert meta["pipeline_tag"] == "text-classification" and arch in meta["tags"]
    assert meta["library_name"] == ("transformers" if arch == "finetune" else "bertclf")
    saved = ModelDir.read(trained / "model")
    assert meta["base_model"] == (saved.encoder.get("name") or "sentence-transformers/all-MiniLM-L6-v2")
    accuracy = meta["model-index"][0]["results"][0]["metrics"][0]
    assert accuracy["type"] == "accuracy" and 0.5 < accuracy["value"] <= 1
    assert "`neg`, `pos`" in body and "dvc exp run" in body and "-S 'train.batch_size=16'" in body
    tokenizer = json.loads((trained / "model" / "tokenizer_config.json").read_text())
    assert tokenizer["model_max_length"] == 24  # the fixture's tokenize.max_length


def test_a_fine_tuned_model_is_a_hugging_face_model(finetuned: Path) -> None:
    """Plain transformers loads the directory and answers with the label names and bertclf's scores."""
    from transformers import pipeline

    hf = pipeline("text-classification", model=str(finetuned), truncation=True, device="cpu")
    texts = ["great wonderful film.", "awful boring mess.", "fine"]
    answers = hf(texts, top_k=None)
    ours = bertclf.load(finetuned).predict(texts)
    for answer, mine in zip(answers, ours, strict=True):
        assert {a["label"] for a in answer} == {"neg", "pos"}
        assert answer[0]["label"] == mine.label
        for a in answer:
            assert a["score"] == pytest.approx(mine.probabilities[a["label"]], abs=1e-4)
    assert hf(" ".join(["great"] * 5000))[0]["label"] in {"neg", "pos"}  # cut to model_max_length


def test_predict_over_a_file_logs_progress_when_not_on_a_terminal(finetuned: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The real process, stderr a pipe (as in CI or a DVC stage log): progress comes as log lines,
    never as a carriage-return bar."""
    src = tmp_path / "in.txt"
    src.write_text("great film.\nawful plot.\nfine.\n", encoding="utf-8")
    monkeypatch.setenv("BERTCLF_PROGRESS_SECONDS", "0")
    done = bertclf_process("predict", "-m", str(finetuned), "-i", str(src), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"INFO bertclf.progress: classifying: 3/3 texts \(100%\), [\d,.]+ texts/s", done.stderr)
    assert "\r" not in done.stderr and "classified 3 texts" in done.stderr


def test_predict_reads_the_column_the_model_was_trained_on(finetuned: Path, tmp_path: Path) -> None:
    """A model trained on a file whose text column is `body` reads `body` from new files too."""
    assert ModelDir.read(finetuned).text_columns == ("text",)
    model = tmp_path / "model"
    model.mkdir()
    for f in finetuned.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    config = json.loads((model / CONFIG).read_text())
    (model / CONFIG).write_text(json.dumps({**config, "input": {"text_column": ["title", "body"]}}))
    src = tmp_path / "new.csv"
    src.write_text("id,title,body\n1,Great,a wonderful film\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", "-m", str(model), "-i", str(src)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == "Great a wonderful film"


def test_precision_auto_is_bf16_where_the_hardware_has_bf16_units_else_int8(
        finetuned: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bertclf.inference import has_bf16_units

    clf = bertclf.load(finetuned, precision="auto")
    assert clf.precision == ("bf16" if has_bf16_units(clf.device) else "int8")
    with monkeypatch.context() as m:  # a CPU without bf16 units: the fine-tuned model on int8 linear layers
        m.setattr("bertclf.inference.has_bf16_units", lambda device: False)
        assert bertclf.load(finetuned, precision="auto").precision == "int8"
    assert bertclf.load(finetuned).precision == "fp32"  # Python's default: exact, equal to evaluate
    texts = ["great wonderful film.", "awful boring mess."]
    fast, exact = clf.predict_proba(texts), bertclf.load(finetuned).predict_proba(texts)
    assert (fast.argmax(1) == exact.argmax(1)).all() and np.abs(fast - exact).max() < 0.05


def test_int8_runs_quantized_linear_layers_with_the_same_answers(finetuned: Path, trained: Path) -> None:
    """--precision int8: the transformer's linear layers (finetune) or the encoder's (the archs over
    token vectors) become dynamic int8 ones; the answers stay those of fp32."""
    texts = ["great wonderful film.", "awful boring mess.", "a fine movie with good acting.",
             "the worst plot and terrible acting."]
    for model in (finetuned, trained / "model"):
        exact, int8 = bertclf.load(model), bertclf.load(model, precision="int8")
        if int8.family.reads == "tokens" and not int8.family.bf16_by_default:
            continue  # cnn / rnn: small learned-embedding models stay fp32
        modules = (int8.model if int8.family.reads == "tokens" else int8.encoder).modules()
        assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in modules), model
        a, b = exact.predict_proba(texts), int8.predict_proba(texts)
        assert (a.argmax(1) == b.argmax(1)).all() and np.abs(a - b).max() < 0.1
    with pytest.raises(BertclfError, match="int8 runs on the CPU"):
        bertclf.load(finetuned, precision="int8", device="cuda")


# bertclf.json as bertclf wrote it at 7ba0220 (format 1): every arch's knobs and the dimensions in
# one flat "model" section (ModelConfig, with these defaults), the data's meta under "data"
FORMAT_1_KNOBS = {"hidden": 50, "depth": 1, "dropout": 0.5, "norm": "none", "residual": False,
                  "attention_dim": 100, "cell": "gru", "embedding_dim": 128, "num_filters": 100,
                  "filter_widths": [3, 4, 5], "attention_dropout": None, "hidden_dropout": None,
                  "window_pool": "mean", "freeze_embeddings": False}


def as_format_1(model: Path, out: Path) -> Path:
    """A copy of model directory `model` with its bertclf.json written as format 1."""
    import shutil

    shutil.copytree(model, out)
    new = json.loads((out / CONFIG).read_text())
    dims = new["dims"]
    flat = {"arch": new["arch"], "input_dim": dims["input_dim"], "num_labels": dims["num_labels"],
            **FORMAT_1_KNOBS, "vocab_size": dims["vocab_size"], "pad_id": dims["pad_id"]}
    flat.update({k: v for k, v in new["model"].items() if k in FORMAT_1_KNOBS})
    flat["cell"] = "lstm" if new["arch"] == "rnn" else "gru"
    data = {"labels": new["labels"], "test_subsampled": new["test"]["subsampled"],
            "test_rows_full": new["test"]["rows_full"], "tokenize": new["tokenize"], **new["data"],
            **({"layers": new["layers"]} if new["layers"] else {})}
    (out / CONFIG).write_text(json.dumps({
        "format_version": 1, "model": flat, "train": new["train"], "data": data, "encoder": new["encoder"],
        "input": {"text_column": new["input"]["text_column"]}}, indent=2) + "\n")
    return out


def test_a_format_1_model_directory_still_predicts(trained: Path, tmp_path: Path) -> None:
    """A directory written by the previous format loads as the same model and predicts the same."""
    old = as_format_1(trained / "model", tmp_path / "old")
    assert json.loads((old / CONFIG).read_text())["format_version"] == 1
    new_md, old_md = ModelDir.read(trained / "model"), ModelDir.read(old)
    for field in ("arch", "dims", "labels", "tokenize", "layers", "text_columns", "test_rows_full"):
        assert getattr(old_md, field) == getattr(new_md, field), field
    kept = set(FORMAT_1_KNOBS)  # format 1 kept no training-only knob (finetune.layer_lr_decay)
    assert {k: v for k, v in asdict(old_md.knobs).items() if k in kept} == {
        k: v for k, v in asdict(new_md.knobs).items() if k in kept}
    texts = ["great wonderful film.", "awful boring mess.", "fine " * 40]
    np.testing.assert_array_equal(bertclf.load(old).predict_proba(texts),
                                  bertclf.load(trained / "model").predict_proba(texts))
    result = CliRunner().invoke(app, ["predict", "-m", str(old), "great film."])
    assert result.exit_code == 0 and result.stdout.split("\t")[0] in {"neg", "pos"}, result.output


@pytest.mark.parametrize(("damage", "said"), [
    (lambda c: {**c, "labels": ["neg"]}, "1 labels for a model of 2 outputs"),
    (lambda c: {**c, "model": {**c["model"], "layer_lr_decy": 0.9}}, "unknown key finetune.layer_lr_decy"),
    (lambda c: {**c, "arch": "transformer"}, "arch 'transformer' is not one of"),
    (lambda c: {**c, "dims": {**c["dims"], "num_labels": "two"}}, "dimensions"),
    (lambda c: {k: v for k, v in c.items() if k != "tokenize"}, "'tokenize'"),
    (lambda c: [c], "not a JSON object"),
])
def test_a_damaged_bertclf_json_is_one_line_naming_it(finetuned: Path, tmp_path: Path, damage: Callable,
                                                       said: str) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(finetuned, model)
    (model / CONFIG).write_text(json.dumps(damage(json.loads((model / CONFIG).read_text()))))
    result = CliRunner().invoke(app, ["predict", "-m", str(model), "x"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    line = result.stderr.strip()
    assert "\n" not in line and str(model / CONFIG) in line and said in line, line


def test_predict_reads_a_header_less_file_of_the_training_file_s_shape(data: Inputs, tmp_path: Path) -> None:
    """A model trained on a header-less file (data.columns, as `bertclf init` sets it) reads new
    files of that shape without --columns; another header-less file gets a hint naming --columns."""
    run_train(data, tmp_path, train={"arch": "bigru", "batch_size": 16, "epochs": 1},
              bigru={"hidden": 4, "attention_dim": 4},
              data={"name": "file", "path": "inputs/data/reviews.csv", "columns": ["c1", "c2"],
                    "text_column": "c2", "label_column": "c1"})
    assert ModelDir.read(tmp_path / "model").columns == ("c1", "c2")
    src = tmp_path / "new.csv"
    src.write_text("pos,a wonderful film\nneg,an awful boring film\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", "-m", str(tmp_path / "model"), "-i", str(src)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["c1"] for r in rows] == ["pos", "neg"] and all(r["label"] in {"neg", "pos"} for r in rows)
    other = tmp_path / "other.csv"
    other.write_text("1,pos,a wonderful film\n2,neg,an awful boring film\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", "-m", str(tmp_path / "model"), "-i", str(other)])
    assert result.exit_code == 1 and "--columns c1,c2,c3" in result.stderr, result.output
    assert "data.columns" not in result.stderr


def readme_onnx_snippet() -> str:
    """The README's Python block that runs an exported model with plain onnxruntime + tokenizers."""
    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    (snippet,) = [b for b in blocks if "Tokenizer.from_file" in b]
    return snippet


def test_plain_onnxruntime_and_tokenizers_agree_with_bertclf(finetuned: Path, data: Inputs, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's snippet, no bertclf in it, on a model exported by `bertclf export`: its files
    cut and pad as training did (at tokenize.max_length, 24 in the fixture, where the encoder's own
    tokenizer.json says 128 and pads every text to 128), so its logits are bertclf's, long texts
    included. Head truncation: the fixture's head_tail is set to head for the long texts (plain
    tokenizers cut from one end only)."""
    import shutil

    head = tmp_path / "head"
    shutil.copytree(finetuned, head)
    saved = json.loads((head / CONFIG).read_text())
    (head / CONFIG).write_text(json.dumps({**saved, "tokenize": {**saved["tokenize"], "truncation": "head"}}))
    test_file = data.tokens.parent / "split" / "test.parquet"
    long_text = " ".join(["a wonderful film"] * 30)  # 90 tokens
    for model, texts in ((finetuned, ["a text to classify", "another one"]), (head, [long_text, "fine"])):
        project = tmp_path / f"project-{model.name}"
        project.mkdir()
        result = CliRunner().invoke(app, ["export", "-m", str(model), "-o", str(project / "models/onnx"),
                                          "--data", str(test_file)])
        assert result.exit_code == 0, result.output
        for files in (model, project / "models/onnx"):  # the model directory, and its export
            fast = json.loads((files / "tokenizer.json").read_text())
            assert fast["truncation"]["max_length"] == 24 and fast["padding"]["strategy"] == "BatchLongest"
            assert json.loads((files / "tokenizer_config.json").read_text())["model_max_length"] == 24
        monkeypatch.chdir(project)
        snippet = readme_onnx_snippet().replace('["a text to classify", "another one"]', repr(texts))
        namespace: dict = {}
        exec(snippet, namespace)
        np.testing.assert_allclose(namespace["logits"], bertclf.load(model).logits(texts), atol=1e-4)


def test_a_model_directory_naming_its_own_tokenizer_code_is_refused_not_run(finetuned: Path,
                                                                             tmp_path: Path) -> None:
    """A tokenizer_config.json with an auto_map names a module of the directory to import: bertclf
    refuses in one line before transformers could ask to run it (a "y" on stdin changes nothing)."""
    import shutil

    planted = tmp_path / "planted"
    shutil.copytree(finetuned, planted)
    marker = tmp_path / "ran"
    (planted / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n")
    config = json.loads((planted / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
    (planted / "tokenizer_config.json").write_text(json.dumps(config))
    command = [str(Path(sys.executable).parent / "bertclf"), "predict", "-m", str(planted), "a text"]
    done = subprocess.run(command, input="y\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "never runs code from a model directory" in lines[-1], lines
    assert "Traceback" not in done.stderr and not marker.exists()


def test_a_model_trained_on_an_int8_store_predicts_what_evaluate_scored(data: Inputs, tmp_path: Path,
                                                                        tiny_bert_dir: Path) -> None:
    """featurize.store int8: the model directory says so, and prediction rounds its vectors the
    same way, so raw text gives the logits evaluate computed from the store."""
    features = tmp_path / "features"
    featurize(data.tokens, tiny_bert_dir, features, FeaturizeConfig(layers="mean_last_4", precision="fp32",
                                                                    store="int8"))
    inputs = Inputs(features, data.tokens, tiny_bert_dir)
    recipe, knobs = TINY_ARCHS["han"]
    run_train(inputs, tmp_path, train={"arch": "han", **recipe}, han=knobs)
    evaluate(tmp_path / "model", inputs, tmp_path / "eval.json", tmp_path / "plots", tmp_path / "predictions")
    clf = bertclf.load(tmp_path / "model")
    assert clf.md.store == "int8"
    test = pd.read_parquet(data.tokens.parent / "split" / "test.parquet")
    want = np.stack(load_predictions(tmp_path / "predictions")["logits"])
    assert np.abs(clf.logits(test["text"].tolist()) - want).max() < 1e-3 * max(1.0, np.abs(want).max())
