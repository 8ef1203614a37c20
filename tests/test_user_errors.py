"""Bad inputs through the real CLI (issue 14): a message that names the key or option and the fix, exit status 2,
no traceback, and nothing of the user's changed or left behind."""

import json
import shutil
import time

import pytest
import yaml
from _lm import one_thread, write_config  # noqa: F401
from typer.testing import CliRunner

from tailor.cli import app
from tailor.models import load as model_load


def invoke(*args, code=2):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def run_dirs(tmp_path):
    runs = tmp_path / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir):
    """A finished LM run (4 steps) on notes.txt, and the folder it is in."""
    root = tmp_path_factory.mktemp("finished")
    invoke("train", write_config(root, tiny_model_dir("gpt2"), max_steps=4), code=0)
    return root / "runs" / "lm-001"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, tiny_model_dir):
    """A run interrupted (SIGINT) at step 3: checkpoint saved, no model yet."""
    root = tmp_path_factory.mktemp("stopped")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAILOR_TEST_SIGNAL", "INT@step:3")
    try:
        invoke("train", write_config(root, tiny_model_dir("gpt2")), code=130)
    finally:
        mp.undo()
    return root / "runs" / "lm-001"


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("seed=-1", "seed: must be >= 0 (got -1)"),
        ("name=" + "n" * 300, "name: at most 100 characters (got 300)"),
        (
            "output_dir=/dev/null/x",
            "output_dir: cannot make run directories in /dev/null/x (/dev/null is not a folder)",
        ),
    ],
)
def test_bad_settings_are_named_before_anything_is_made(tmp_path, tiny_model_dir, override, says):
    assert says in invoke("train", write_config(tmp_path, tiny_model_dir("gpt2")), override)
    assert run_dirs(tmp_path) == []


def test_a_model_that_cannot_load_leaves_no_run_directory(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir("gpt2"), broken)
    (broken / "model.safetensors").unlink()
    out = invoke("train", write_config(tmp_path, broken))
    assert "could not load the model in" in out and "model.safetensors" in out
    assert run_dirs(tmp_path) == []


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1 (got 0)"),
        (["--temperature", "-1"], "--temperature must be >= 0"),
        (["--top-p", "0"], "--top-p must be in (0, 1] (got 0.0)"),
    ],
)
def test_generate_checks_its_options_like_chat(tiny_model_dir, option, says):
    assert says in invoke("generate", tiny_model_dir("gpt2"), "the pump", *option)


def test_empty_config_and_repeated_keys(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n\n")
    out = invoke("train", empty)
    assert "the config is empty" in out and "no training data" not in out
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "model: tailor-tiny\ntask: lm\ndata:\n  train: a.txt\n  max_length: 32\n  train: b.txt\n"
    )
    out = invoke("train", twice)
    assert "line 6: key 'train' is given twice in the same section (also on line 4)" in out


def test_a_single_tracker_name_is_a_list_of_one(tmp_path):
    from tailor.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"train": "x.txt"},
                "train": {"report_to": "tensorboard"},
                "strategy": {"name": "lora", "lora": {"target_modules": "c_attn"}},
            }
        )
    )
    loaded = load_config(cfg)
    assert loaded.train.report_to == ["tensorboard"] and loaded.strategy.lora.target_modules == [
        "c_attn"
    ]
    assert load_config(cfg, ["train.report_to=mlflow"]).train.report_to == ["mlflow"]


def test_hub_ids_fail_fast_without_network(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(
        model_load, "hub_reachable", lambda timeout=2.5: False
    )  # as when there is no network
    cfg = write_config(tmp_path, tiny_model_dir("gpt2"))
    t0 = time.perf_counter()
    out = invoke("train", cfg, "model.path=someorg/somemodel")
    assert (
        "someorg/somemodel" in out
        and "the hub is not reachable" in out
        and "not in the local cache" in out
    )
    out = invoke("train", cfg, "model.path=my_model_dir")
    assert f"there is no folder 'my_model_dir' here ({tmp_path.cwd()})" in out and "hub id" in out
    assert time.perf_counter() - t0 < 20 and run_dirs(tmp_path) == []


def test_a_hub_failure_says_a_bare_name_is_no_local_folder_either():
    src = model_load.Source("hub", "my_model_dir")
    said = model_load._explain(
        src, OSError("my_model_dir is not a local folder and is not a valid model identifier")
    )
    assert (
        "there is no folder 'my_model_dir' here" in said and "If you meant a local folder" in said
    )


def test_a_pickled_lora_adapter_is_refused_with_a_message(finished, tmp_path):
    run = tmp_path / "lora-001"
    shutil.copytree(finished, run)
    (run / "model" / "adapter_config.json").write_text("{}")
    (run / "model" / "adapter_model.bin").write_bytes(b"\x80\x04not really")
    out = invoke("generate", run, "the pump")
    assert "not in safetensors format (adapter_model.bin)" in out and "never unpickles" in out


def test_an_unfinished_run_says_how_to_finish_it(stopped, tmp_path):
    resume = f"tailor resume {stopped}"
    cfg = tmp_path / "again.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"model": str(stopped), "data": {"train": str(stopped.parent.parent / "notes.txt")}}
        )
    )
    assert resume in invoke("train", cfg)  # as model.path
    assert resume in invoke("generate", stopped, "the pump")
    assert resume in invoke("eval", stopped, "--data", stopped.parent.parent / "notes.txt")
    assert resume in invoke("export", stopped, "--out", tmp_path / "out")
    assert resume in invoke("compare", stopped)
    assert not (tmp_path / "out").exists()


def test_eval_never_overwrites_and_warns_about_training_examples(finished, tmp_path):
    notes = finished.parent.parent / "notes.txt"
    kept = tmp_path / "mine.jsonl"
    kept.write_text("my own notes\n")
    out = invoke("eval", finished, "--data", notes, "--predictions", kept)
    assert "already exists; nothing was scored" in out and "--force" in out
    assert kept.read_text() == "my own notes\n"
    train_ids = json.loads((finished / "split.json").read_text())["train"]
    out = invoke("eval", finished, "--data", notes, code=0)
    assert f"{len(train_ids)} of 16 examples were in this run's training split" in out
    data = json.loads(
        CliRunner().invoke(app, ["eval", str(finished), "--data", str(notes), "--json"]).stdout
    )
    assert data["trained_on"] == len(train_ids) and data["examples"] == 16
    assert set(data) == {
        "run",
        "data",
        "metrics",
        "examples",
        "trained_on",
        "warnings",
        "predictions",
    }
    assert data["metrics"]["loss"] > 0


def test_export_force_moves_what_it_did_not_write_aside(finished, tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "notes.md").write_text("precious\n")
    said = invoke("export", finished, "--out", out, "--force", code=0)
    aside = tmp_path / "exported.before-export"
    assert f"moved to {aside}" in said
    assert (aside / "notes.md").read_text() == "precious\n" and (
        out / "model.safetensors"
    ).is_file()
    said = invoke(
        "export", finished, "--out", out, "--force", code=0
    )  # only its own files there: replaced
    assert "moved" not in said and not (tmp_path / "exported.before-export-2").exists()
    assert (out / "model.safetensors").is_file() and (aside / "notes.md").is_file()


def test_version_and_completion():
    from tailor import __version__

    assert invoke("--version", code=0) == f"tailor {__version__}"
    assert "--install-completion" in invoke("--help", code=0)
