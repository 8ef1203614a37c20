"""Guards: non-finite steps skipped and counted, divergence and out-of-memory stopped with settings to change."""

import importlib.util
import json

import pytest
import torch
from _lm import curve, one_thread, write_config  # noqa: F401
from typer.testing import CliRunner

from tailor.cli import app
from tailor.registry import list_runs
from tailor.tasks.lm import LanguageModelling


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def poison_loss(monkeypatch, bad_calls, error=None):
    """The task's loss is NaN (or raises `error`) on the given calls (1-based); the real loss otherwise."""
    real, calls = LanguageModelling.loss, []

    def loss(self, model, batch):
        calls.append(1)
        value = real(self, model, batch)
        if bad_calls == "all" or len(calls) in bad_calls:
            if error is not None:
                raise error
            return value * float("nan")
        return value

    monkeypatch.setattr(LanguageModelling, "loss", loss)


def test_a_nan_loss_skips_that_step_and_counts_it(tmp_path, tiny_model_dir, monkeypatch):
    poison_loss(monkeypatch, {5})  # the 5th forward pass: step 3 (grad_accum 2)
    assert invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), grad_accum=2)).exit_code == 0
    run = tmp_path / "runs" / "lm-001"
    rows = {r["step"]: r for r in curve(run) if "split" not in r}
    assert "skipped_steps" not in rows[2] and rows[3]["skipped_steps"] == 1 and rows[10]["skipped_steps"] == 1
    assert rows[3]["lr"] == rows[2]["lr"] and rows[4]["lr"] < rows[3]["lr"]  # the scheduler did not step at 3
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["train"]["skipped_steps"] == 1 and summary["train"]["steps"] == 10
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows.values())


def test_only_non_finite_steps_stop_after_max_bad_steps(tmp_path, tiny_model_dir, monkeypatch):
    poison_loss(monkeypatch, "all")
    result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), max_bad_steps=3))
    assert result.exit_code == 2, result.output
    assert "3 steps in a row had a non-finite loss" in result.output and "train.max_bad_steps=3" in result.output
    assert "Traceback" not in result.output
    assert [r["status"] for r in list_runs(tmp_path / "runs")] == ["failed"]


def test_a_learning_rate_that_diverges_stops_naming_it(tmp_path, tiny_model_dir):
    result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), lr=1e3, max_steps=20))
    assert result.exit_code == 2, result.output
    assert "diverged" in result.output and "train.lr=1000 is too high" in result.output
    assert "try train.lr=100" in result.output and "Traceback" not in result.output
    row = list_runs(tmp_path / "runs")[0]
    assert row["status"] == "failed" and "train.lr=1000" in row["message"]


def test_out_of_memory_suggests_a_setting_that_fits(tmp_path, tiny_model_dir, monkeypatch):
    poison_loss(monkeypatch, {3}, error=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), batch_size=8, grad_accum=2))
    assert result.exit_code == 2, result.output
    assert "out of memory" in result.output and "train.batch_size=4 train.grad_accum=4" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_a_tracker_whose_package_is_missing_is_named(tmp_path, tiny_model_dir):
    result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), report_to=["tensorboard"]))
    assert result.exit_code == 2
    assert "pip install tensorboard" in result.output and not (tmp_path / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_gets_the_metrics_too(tmp_path, tiny_model_dir):
    result = invoke("train", write_config(tmp_path, tiny_model_dir("gpt2"), report_to=["tensorboard"], max_steps=3))
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "lm-001"
    assert list((run / "logs").rglob("events.out.tfevents.*")) and len(curve(run)) >= 3
