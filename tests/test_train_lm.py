"""End to end through the real CLI: language modelling on a tiny model built in the test."""

import json
import random
import re

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tailor.cli import app

WORDS = "the a small red blue quiet machine valve pump filter was is checked replaced cleaned noisy fine".split()


def corpus(path, n_docs, seed):
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + "." for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, make_tokenizer, make_tiny_model):
    root = tmp_path_factory.mktemp("tiny")
    tok = make_tokenizer(root)
    return make_tiny_model("gpt2", tok, root / "gpt2")


def write_config(tmp_path, model_dir, **train):
    cfg = {
        "name": "lm", "output_dir": str(tmp_path / "runs"), "model": str(model_dir), "task": "lm",
        "data": {"train": str(corpus(tmp_path / "notes.txt", 120, 0)), "max_length": 32},
        "train": {"max_steps": 6, "batch_size": 8, "lr": 3e-3, "log_every": 1, "eval_every": 3, **train},
    }
    p = tmp_path / "lm.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def run_cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_lm_run_writes_everything_and_beats_baseline(tmp_path, tiny_gpt2):
    cfg = write_config(tmp_path, tiny_gpt2, max_steps=30)
    run_cli("train", cfg)
    run = tmp_path / "runs" / "lm-001"
    for name in ("config.yaml", "data.json", "split.json", "metrics.jsonl", "metrics.json", "report.md",
                 "loss_curve.png", "tailor.json", "model/config.json", "model/model.safetensors"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    base, tuned = metrics["baseline"]["test"], metrics["fine_tuned"]["test"]
    assert tuned["perplexity"] < base["perplexity"]
    assert metrics["train"]["tokens_per_second"] > 0
    report = (run / "report.md").read_text()
    assert "pre-trained" in report and "perplexity" in report
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["optimizer"] == "adamw" and resolved["train"]["lr"] == 3e-3
    model = AutoModelForCausalLM.from_pretrained(run / "model")  # plain transformers, no tailor code
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert model(**tok("the pump", return_tensors="pt")).logits.shape[-1] == model.config.vocab_size


def test_new_run_never_overwrites_and_seeded_runs_repeat(tmp_path, tiny_gpt2):
    cfg = write_config(tmp_path, tiny_gpt2)
    run_cli("train", cfg)
    run_cli("train", cfg)
    curves = []
    for name in ("lm-001", "lm-002"):
        rows = [json.loads(x) for x in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        curves.append([r["loss"] for r in rows if "split" not in r])
    assert len(curves[0]) == 6
    assert curves[0] == curves[1]
    run_cli("train", cfg, "seed=1")
    rows = [json.loads(x) for x in (tmp_path / "runs" / "lm-003" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows if "split" not in r] != curves[0]


def test_fine_tune_again_from_a_run_records_lineage(tmp_path, tiny_gpt2):
    run_cli("train", write_config(tmp_path, tiny_gpt2))
    first = tmp_path / "runs" / "lm-001"
    run_cli("train", write_config(tmp_path, first))
    meta = json.loads((tmp_path / "runs" / "lm-002" / "tailor.json").read_text())
    assert meta["lineage"][-1]["run"] == str(first.resolve())
    assert meta["base"]["kind"] == "run"


def test_model_errors_are_clear(tmp_path):
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path, tmp_path / "nope"))])
    assert result.exit_code == 2
    assert "no such directory" in result.output and "Traceback" not in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path, empty))])
    assert result.exit_code == 2 and "not a model" in result.output
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path, "someorg/missing-model"))])
    assert result.exit_code == 2  # the hub is unreachable here (conftest): said at once, not after retries
    assert "someorg/missing-model" in result.output and "hub is not reachable" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_round_trip_gives_identical_logits(tmp_path, tiny_gpt2):
    from tailor.api import load_run, train
    from tailor.config import load_config

    trained = train(load_config(write_config(tmp_path, tiny_gpt2)))
    model, tok, meta = load_run(trained.path)
    plain = AutoModelForCausalLM.from_pretrained(trained.path / "model")
    ids = tok("the quiet pump was checked", return_tensors="pt")
    trained.model.eval()
    with torch.no_grad():
        expected = trained.model.logits(ids["input_ids"], ids["attention_mask"])
        assert torch.equal(model.logits(ids["input_ids"], ids["attention_mask"]), expected)
        # plain transformers runs GPT-2's GELU as Python ops, tailor as torch's fused kernel: equal to rounding
        torch.testing.assert_close(plain(**ids).logits, expected, rtol=0, atol=1e-4)
    assert meta["task"]["type"] == "lm"
    assert AutoModelForCausalLM.from_pretrained(trained.path / "model").config.activation_function == "gelu_new"


def test_fused_gelu_computes_the_same_function(tiny_gpt2):
    from transformers.activations import NewGELUActivation

    from tailor.models.load import fuse_activations

    plain = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    fused = fuse_activations(AutoModelForCausalLM.from_pretrained(tiny_gpt2)).eval()
    assert any(isinstance(m, NewGELUActivation) for m in plain.modules())
    assert not any(isinstance(m, NewGELUActivation) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.GELU) for m in fused.modules()) == plain.config.n_layer
    ids = torch.randint(0, plain.config.vocab_size, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, plain(ids).logits, rtol=0, atol=1e-4)


def test_leakage_drop_is_recorded_and_piped_output_shows_progress(tmp_path, tiny_gpt2):
    """data.leakage: drop trains without the copies and says so in data.json and report.md; piped output has the
    baseline's scoring time and, on every step line, the time so far and the time to go."""
    cfg = yaml.safe_load(write_config(tmp_path, tiny_gpt2).read_text())
    docs = (tmp_path / "notes.txt").read_text().strip().split("\n\n")
    (tmp_path / "bench.txt").write_text("\n\n".join([docs[5], "a pump nobody trained on.", docs[9]]) + "\n")
    cfg["data"] |= {"test": str(tmp_path / "bench.txt"), "leakage": "drop"}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "lm.yaml")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "lm-001"
    data = json.loads((run / "data.json").read_text())
    assert data["leakage"] == {"setting": "drop", "dropped_from_train": 2, "kept": 0}
    assert data["warning_kinds"]["leakage dropped from train"] == 2
    assert "data.leakage: **drop**: 2 training records" in (run / "report.md").read_text()
    assert re.search(r"scored pre-trained on validation: \d+ examples in \d+\.\d s", result.output)
    assert re.search(r"scored pre-trained on test: \d+ examples in \d+\.\d s", result.output)
    steps = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert len(steps) == 6 and all(" elapsed 0:00:" in s and " eta " in s for s in steps)
