"""tailor export: a LoRA run merged into a plain transformers model (== the unmerged adapter), or copied as is."""

import random

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tailor.api import load_run, train
from tailor.cli import app
from tailor.config import load_config

WORDS = "the a small red blue quiet machine valve pump filter was is checked replaced cleaned noisy fine".split()
PROMPT = "the quiet pump was checked and the red valve"


def run_cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def lm_run(root, model_dir, strategy):
    rng = random.Random(0)
    text = root / "notes.txt"
    text.write_text("\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(80)))
    cfg = {"name": strategy, "output_dir": str(root / "runs"), "model": str(model_dir), "task": "lm",
           "strategy": strategy, "data": {"train": str(text), "max_length": 32},
           "train": {"max_steps": 6, "batch_size": 8, "lr": 2e-2, "eval_every": 6}, "eval": {"baseline": False}}
    path = root / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return train(load_config(path))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lora(request, tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp(f"lora-{request.param}")
    return lm_run(root, tiny_model_dir(request.param), "lora"), tiny_model_dir(request.param)


def logits(model, tok):
    ids = tok(PROMPT, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**ids).logits


def test_lora_run_saves_an_adapter_that_reloads(lora):
    run, base = lora
    assert (run.path / "model" / "adapter_config.json").is_file()
    assert not (run.path / "model" / "model.safetensors").exists()
    model, tok, meta = load_run(run.path)  # models/load.py: base from tailor.json + adapter, merged
    assert meta["base"]["location"] == str(base.resolve())
    ids = tok(PROMPT, return_tensors="pt")
    run.model.eval()
    with torch.no_grad():
        expected = run.model.logits(ids["input_ids"], ids["attention_mask"])
        torch.testing.assert_close(model.logits(ids["input_ids"], ids["attention_mask"]), expected, atol=1e-5, rtol=1e-5)


def test_merged_export_equals_the_unmerged_adapter_and_loads_with_plain_transformers(lora, tmp_path):
    run, base_dir = lora
    out = tmp_path / "merged"
    run_cli("export", run.path, "--merge", "--out", out)
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft, no tailor
    tok = AutoTokenizer.from_pretrained(out)
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), run.path / "model")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    expected = logits(unmerged, tok)
    torch.testing.assert_close(logits(merged, tok), expected, atol=1e-5, rtol=1e-5)
    assert (logits(base, tok) - expected).abs().max() > 1e-3  # the adapter learned something: the test can fail


def test_export_without_merge_copies_the_adapter_and_never_overwrites(lora, tmp_path):
    run, _ = lora
    out = tmp_path / "copy"
    text = run_cli("export", run.path, "--out", out)
    assert "LoRA adapter" in text and (out / "adapter_config.json").is_file()
    out2 = run_cli("export", run.path, "--merge", "--out", out, code=2)
    assert "not empty" in out2 and "--force" in out2
    assert (out / "adapter_config.json").is_file()  # untouched
    run_cli("export", run.path, "--merge", "--out", out, "--force")
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()


def test_full_run_exports_as_is_and_bad_targets_are_user_errors(tmp_path, tiny_model_dir):
    run = lm_run(tmp_path, tiny_model_dir("gpt2"), "full")
    out = run_cli("export", run.path, "--merge", "--out", tmp_path / "full")
    assert "not a LoRA run" in out
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    tok = AutoTokenizer.from_pretrained(tmp_path / "full")
    torch.testing.assert_close(logits(model, tok), logits(AutoModelForCausalLM.from_pretrained(run.path / "model"), tok))
    assert "not a finished run" in run_cli("export", tmp_path, "--out", tmp_path / "x", code=2)
    assert "outside the run directory" in run_cli("export", run.path, "--out", run.path / "model", "--force", code=2)
