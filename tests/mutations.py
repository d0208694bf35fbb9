"""Plant known bugs, one at a time, and check that the tests catch each of them.

    .venv/bin/python tests/mutations.py            # every mutation (a few minutes)
    .venv/bin/python tests/mutations.py mask       # the mutations whose name contains "mask"

Each mutation copies the working tree to a temporary directory, makes one textual change, and runs
the tests meant to catch it there. A mutation the tests let through ("SURVIVED") is a test gap,
and so is one whose tests were skipped or errored; the exit status is 1 when any is. This file is
not collected by pytest (its name does not start with ``test_``): it runs the suite itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation("resume never resumes (the newest checkpoint is ignored)", "src/bertclf/training/checkpoints.py",
             "    return resumable\n", "    return None\n",
             ("tests/test_training.py::test_resume_after_a_kill_equals_an_uninterrupted_run",
              "tests/test_token_archs.py::test_resume_equals_uninterrupted_for_finetune")),
    Mutation("a finished run is resumed (COMPLETE ignored)", "src/bertclf/training/checkpoints.py",
             "    if (ckpt_dir / COMPLETE).exists():", "    if False:",
             ("tests/test_training.py::test_a_finished_run_is_never_resumed",)),
    Mutation("the resume key ignores the input contents", "src/bertclf/training/checkpoints.py",
             "        _hash_tree(h, Path(path), f\"input {i}\")", "        pass",
             ("tests/test_training.py::test_changed_feature_contents_are_not_resumed",
              "tests/test_training.py::test_a_changed_encoder_is_not_resumed")),
    Mutation("attention mask all ones in pad_ids (padding attended to)", "src/bertclf/data/stores.py",
             "        mask[row, : len(x)] = 1", "        mask[row, :] = 1",
             ("tests/test_features.py",)),
    Mutation("the predictor ignores the trained layer combination", "src/bertclf/serving/predictor.py",
             'batch_encoder(encoder, md.layers or "last", pad_id', 'batch_encoder(encoder, "last", pad_id',
             ("tests/test_predict.py::test_predictions_from_raw_text_equal_evaluate",)),
    Mutation("an exported (int8) model returns all-zero logits", "src/bertclf/serving/predictor.py",
             "        return torch.from_numpy(logits)\n", "        return torch.from_numpy(logits) * 0\n",
             ("tests/test_predict.py::test_export_onnx_and_int8_keep_predictions",)),
    Mutation("CLI errors escape as tracebacks", "src/bertclf/cli_support.py",
             "        message = None if debugging() else explain(exc)\n",
             "        message = None\n",
             ("tests/test_predict.py::test_the_real_command_fails_with_one_line_and_no_traceback",)),
    Mutation("a truncated checkpoint is taken for a whole one", "src/bertclf/training/checkpoints.py",
             "        return path.stat().st_size >= 8 + size + end\n", "        return True\n",
             ("tests/test_training.py::test_a_damaged_checkpoint_falls_back_to_an_intact_one_or_starts_fresh",)),
    Mutation("a killed writer's temporaries are never cleaned", "src/bertclf/atomic.py",
             "        if not _writer_alive(stale):\n            _remove(stale)\n",
             "        pass\n",
             ("tests/test_atomic.py", "tests/test_features.py")),
    Mutation("CSV cells that a spreadsheet would run are written as they are", "src/bertclf/plotting.py",
             "        return \"'\" + value\n", "        return value\n",
             ("tests/test_predict.py::test_predictions_csv_cannot_carry_a_spreadsheet_formula",
              "tests/test_predict.py::test_every_csv_the_project_writes_goes_through_the_safe_writer")),
    Mutation("single-class data passes split", "src/bertclf/data/splitting.py",
             "    if len(names) < 2:\n", "    if False:\n",
             ("tests/test_bad_inputs.py",)),
    Mutation("a subsampled test set is not flagged in metrics/eval.json", "src/bertclf/evaluation.py",
             '    report["test_subsampled"] = md.test_subsampled',
             '    report["test_subsampled"] = False',
             ("tests/test_pipeline_integration.py::test_a_full_run_writes_scores_reports_and_a_model",)),
    Mutation("serving reaches sideways into training", "src/bertclf/serving/bench.py",
             "from bertclf.errors import BertclfError\n",
             "from bertclf.errors import BertclfError\nfrom bertclf.training.optim import make_scheduler\n",
             ("tests/test_layers.py",)),
    Mutation("a module outside the registry branches on an arch name", "src/bertclf/evaluation.py",
             '    report: dict[str, Any] = {"arch": arch.name}',
             '    report: dict[str, Any] = {"arch": arch.name, "finetuned": arch.name == "finetune"}',
             ("tests/test_layers.py",)),
    Mutation("a format-1 model directory loses its layer combination", "src/bertclf/model_dir.py",
             '        layers=data.get("layers", "last") if ARCHS[arch].reads == "features" else None,',
             '        layers=None,',
             ("tests/test_predict.py::test_a_format_1_model_directory_still_predicts",)),
    Mutation("an exported tokenizer cuts at the encoder's length, not the training length",
             "src/bertclf/model_dir.py",
             '"direction": side.capitalize(), "max_length": tokenize.max_length,',
             '"direction": side.capitalize(), "max_length": 128,',
             ("tests/test_predict.py::test_plain_onnxruntime_and_tokenizers_agree_with_bertclf",)),
    Mutation("predict ignores the columns of a header-less training file",
             "src/bertclf/serving/predict_io.py",
             "        columns = headerless_columns(src, clf.md.columns, text_column)\n",
             "        columns = None\n",
             ("tests/test_predict.py::test_predict_reads_a_header_less_file_of_the_training_file_s_shape",)),
    Mutation("multi-label predictions ignore the thresholds chosen on validation", "src/bertclf/tasks.py",
             "        return (probs >= cut).astype(np.int8)\n",
             "        return (probs >= 0.5).astype(np.int8)\n",
             ("tests/test_multi_label.py::"
              "test_the_thresholds_chosen_on_validation_are_the_ones_predict_applies",)),
    Mutation("a softmax where a multi-label model needs a sigmoid per label", "src/bertclf/tasks.py",
             "    return (torch.sigmoid(scores) if task == MULTI else torch.softmax(scores, dim=1))"
             ".numpy()\n",
             "    return torch.softmax(scores, dim=1).numpy()\n",
             ("tests/test_multi_label.py::test_the_thresholds_chosen_on_validation_are_the_ones_predict_applies",
              "tests/test_multi_label.py::test_a_fine_tuned_multi_label_model_is_a_hugging_face_multi_label_model")),
    Mutation("multi-label splits are carved at random, not stratified", "src/bertclf/data/splitting.py",
             "    _, taken = next(splitter.split(np.zeros((n, 1)), strata))\n",
             "    taken = rng.permutation(n)[:n_take]\n",
             ("tests/test_multi_label.py::test_iterative_stratification_keeps_every_label_s_share",)),
    Mutation("evaluate does not depend on the inference module it runs", "dvc.yaml",
             "      - src/bertclf/evaluation.py\n      - src/bertclf/inference.py\n",
             "      - src/bertclf/evaluation.py\n",
             ("tests/test_dvc_yaml.py",)),
    Mutation("ordinal ratings sorted as text (10 before 2)", "src/bertclf/data/labels.py",
             "    return sorted(numbers, key=numbers.__getitem__)\n", "    return sorted(numbers)\n",
             ("tests/test_ordinal.py::test_ratings_sort_as_numbers_and_names_follow_label_order",
              "tests/test_ordinal.py::test_tfidf_and_combine_score_ordinal_data")),
    Mutation("ordinal answers the most probable class, not the median", "src/bertclf/tasks.py",
             "    if task == ORDINAL:  # the first class where", "    if False:  # the first class where",
             ("tests/test_ordinal.py::test_the_answer_is_the_median_of_the_distribution",
              "tests/test_ordinal.py::test_predict_serve_and_onnx_answer_the_median_rating")),
    Mutation("the emd loss is cross-entropy", "src/bertclf/tasks.py",
             '    if task == ORDINAL and ordinal_loss == "emd":', '    if False:',
             ("tests/test_ordinal.py::test_emd_charges_mass_far_from_the_true_rating_more",)),
    Mutation("a regression model is saved without its target scale", "src/bertclf/training/loop.py",
             "        tasks.fold_scale(run.arch.head(run.model), run.scale)\n", "        pass\n",
             ("tests/test_regression.py::test_every_arch_learns_values_and_outputs_them_unscaled",)),
    Mutation("a higher RMSE counts as better", "src/bertclf/tasks.py",
             "    return -score if metric in LOWER_IS_BETTER else score",
             "    return score",
             ("tests/test_regression.py::test_lower_rmse_is_better_for_early_stopping_and_combine",
              "tests/test_regression.py::test_ridge_floor_and_combine_score_regression")),
    Mutation("a tokenizer naming its own code is loaded", "src/bertclf/data/tokenization.py",
             "    if custom:\n", "    if False:\n",
             ("tests/test_predict.py::test_a_model_directory_naming_its_own_tokenizer_code_is_refused_not_run",)),
    Mutation("an encoder shipped in fp16 trains fp16 master weights", "src/bertclf/encoder.py",
             '**{"dtype": torch.float32, **extra}', "**extra",
             ("tests/test_precision.py::test_an_encoder_shipped_in_fp16_loads_as_fp32_master_weights",)),
    Mutation("auto on a GPU without bf16 runs fp32, not fp16", "src/bertclf/inference.py",
             '    return "fp16" if device.type == "cuda" else "fp32"', '    return "fp32"',
             ("tests/test_precision.py::test_auto_precision_by_device",)),
    Mutation("fp16's loss scale is left out of the checkpoint", "src/bertclf/training/checkpoints.py",
             '        rng["scaler"] = scaler.state_dict()', "        pass",
             ("tests/test_precision.py::test_fp16_fine_tuning_learns_and_checkpoints_its_loss_scale",)),
    Mutation("featurize under several processes writes only rank 0's batches", "src/bertclf/features.py",
             "shard=(ddp.rank, ddp.world), scales=scales)",
             "shard=(ddp.rank, ddp.world) if ddp.is_main else (10**9, 1), scales=scales)",
             ("tests/test_distributed.py::test_two_gloo_processes_from_the_stages_match_one_process",)),
    Mutation("an int8 store read without its scales", "src/bertclf/data/stores.py",
             "        return self.vectors[rows].astype(np.float32) * self.scales[rows, None]",
             "        return self.vectors[rows].astype(np.float32)",
             ("tests/test_features.py::test_an_int8_store_is_half_the_bytes_within_half_a_step_of_float16",)),
    Mutation("prediction does not round new text as the int8 store did", "src/bertclf/serving/predictor.py",
             '        int8 = self.md.store == "int8"', "        int8 = False",
             ("tests/test_predict.py::test_a_model_trained_on_an_int8_store_predicts_what_evaluate_scored",)),
    Mutation("a GPU training test whose bar cannot be reached", "tests/test_cuda.py",
             "layerwise_param_groups(model, 3e-3,", "layerwise_param_groups(model, 3e-5,",
             ("tests/test_cuda.py::test_training_steps_on_the_gpu_learn",)),
)


def worktree_copy(dst: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    if (REPO / ".venv").exists():
        (dst / ".venv").symlink_to(REPO / ".venv")  # the integration tests run dvc from .venv/bin
    # a git repository, as the integration tests list its files with `git ls-files`
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)


def run(mutation: Mutation) -> tuple[str, float, str]:
    """(caught | SURVIVED | not checked, seconds, last lines) of the tests on the mutated tree."""
    with tempfile.TemporaryDirectory(prefix="bertclf-mutant-") as tmp:
        root = Path(tmp) / "main"
        worktree_copy(root)
        if (REPO.parent / "shared").exists():  # the dataset mirror, beside the checkout as in CI
            (Path(tmp) / "shared").symlink_to(REPO.parent / "shared")
        target = root / mutation.file
        text = target.read_text(encoding="utf-8")
        if text.count(mutation.old) != 1:
            raise SystemExit(f"{mutation.name}: the text to change is not in {mutation.file} exactly once")
        target.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
        # the CUDA tests run on the CPU here (their own switch), so their mutations are checked too
        env = {**os.environ, "PYTHONPATH": str(root / "src"), "BERTCLF_CUDA_TESTS_ON": "cpu"}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               *mutation.tests], cwd=root, env=env, capture_output=True, text=True)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        summary = tail.splitlines()[-1] if tail else ""
        if done.returncode == 1 and " failed" in summary and " error" not in summary:
            verdict = "caught"
        elif done.returncode == 0 and "skipped" not in summary:
            verdict = "SURVIVED"
        else:
            verdict = f"not checked ({summary})"
        return verdict, time.perf_counter() - t0, tail


def main() -> int:
    chosen = [m for m in MUTATIONS if not sys.argv[1:] or any(a in m.name for a in sys.argv[1:])]
    survived = 0
    print("| planted bug | tests | result |\n|---|---|---|")
    for mutation in chosen:
        verdict, seconds, tail = run(mutation)
        survived += verdict != "caught"
        tests = ", ".join(t.split("::")[-1] for t in mutation.tests)
        print(f"| {mutation.name} | {tests} | {verdict} ({seconds:.0f} s) |", flush=True)
        if verdict != "caught":
            print(tail, file=sys.stderr)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
