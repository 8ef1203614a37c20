"""Optimisation and regularisation settings each change training as they say; every strategy runs end to end."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tailor.api import load_run, train
from tailor.cli import app
from tailor.config import ConfigError, load_config
from tailor.data.synthetic import build_world, sentiment_records

STRATEGIES = ("full", "head", "top_k", "llrd", "gradual", "lora")


@pytest.fixture(autouse=True)
def fresh_accelerator():
    """accelerate keeps one process-wide state: fit() with fp32 after bf16 (or back) raises without a reset.

    TODO(loop): fit() should reset it itself; until then, these tests that switch precision reset it.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sentiment_records(build_world(0), 120, 0)))
    return path


def write_config(root, model_dir, data, **train_cfg):
    cfg = {"name": "cls", "output_dir": str(root / "runs"), "model": str(model_dir), "task": "classification",
           "data": {"train": str(data), "max_length": 32, "split": {"validation": 0.15, "test": 0.15}},
           "train": {"max_steps": 2, "batch_size": 16, "lr": 3e-3, "log_every": 1, **train_cfg},
           "eval": {"baseline": False, "batch_size": 64}}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "cls.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_train(root, model_dir, data, *overrides, **train_cfg):
    return train(load_config(write_config(root, model_dir, data, **train_cfg), list(overrides)))


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_end_to_end_through_the_cli(strategy, arch, tmp_path, tiny_model_dir, reviews):
    cfg = write_config(tmp_path, tiny_model_dir(arch), reviews)
    result = CliRunner().invoke(app, ["train", str(cfg), f"strategy.name={strategy}", "strategy.k=1",
                                      "strategy.unfreeze_every=1"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "cls-001"
    metrics = json.loads((run / "metrics.json").read_text())
    info = metrics["train"]["strategy"]
    assert info["name"] == strategy and metrics["train"]["steps"] == 2
    assert "accuracy" in metrics["fine_tuned"]["test"]
    assert (info["trainable"] == info["total"]) == (strategy in ("full", "llrd"))  # gradual: counted at step 0
    assert (run / "model" / "adapter_config.json").is_file() == (strategy == "lora")
    if strategy == "lora":  # the adapter reloads onto its base (merged), with the task layers
        model, _, _ = load_run(run)
        assert len(model.heads) == 1 and not any("lora_" in n for n, _ in model.named_parameters())


def test_sgd_and_adamw_take_different_steps(tmp_path, tiny_model_dir, reviews):
    sgd = run_train(tmp_path / "sgd", tiny_model_dir("gpt2"), reviews, optimizer="sgd", precision="fp32")
    adamw = run_train(tmp_path / "adamw", tiny_model_dir("gpt2"), reviews, optimizer="adamw", precision="fp32")
    a, b = params(sgd.model), params(adamw.model)
    assert any(not torch.allclose(a[n], b[n]) for n in a)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_dropout_override_reaches_every_dropout(arch, tmp_path, tiny_model_dir, reviews):
    run = run_train(tmp_path, tiny_model_dir(arch), reviews, "train.dropout=0.3")
    drops = [m.p for m in run.model.modules() if isinstance(m, torch.nn.Dropout)]
    rates = [m.attention_dropout for m in run.model.modules() if isinstance(getattr(m, "attention_dropout", None), float)]
    assert drops and all(p == 0.3 for p in drops)  # task layers' dropout included
    assert (len(rates) == 2) == (arch == "llama") and all(p == 0.3 for p in rates)  # llama: a float per layer


def one_sgd_step(root, model_dir, data, *overrides) -> dict[str, torch.Tensor]:
    """Full fine-tuning for one optimiser step on exactly 8 examples, no dropout, fp32, plain SGD."""
    run = run_train(root, model_dir, data, "data.limit=8", "data.split.validation=0", "data.split.test=0",
                    "train.dropout=0", "train.precision=fp32", "train.optimizer=sgd", "train.weight_decay=0",
                    "train.max_steps=1", *overrides)
    return params(run.model)


def test_grad_accum_matches_the_larger_batch(tmp_path, tiny_model_dir, reviews):
    model = tiny_model_dir("gpt2")
    big = one_sgd_step(tmp_path / "b8", model, reviews, "train.batch_size=8")
    accum = one_sgd_step(tmp_path / "b4x2", model, reviews, "train.batch_size=4", "train.grad_accum=2")
    effective = one_sgd_step(tmp_path / "eff", model, reviews, "train.batch_size=4", "train.effective_batch_size=8")
    half = one_sgd_step(tmp_path / "b4", model, reviews, "train.batch_size=4")  # one step on half the data
    for n in big:
        torch.testing.assert_close(accum[n], big[n], atol=1e-6, rtol=1e-5)
        assert torch.equal(effective[n], accum[n])
    assert any(not torch.allclose(half[n], big[n], atol=1e-6, rtol=1e-5) for n in big)  # the check can fail


def test_max_grad_norm_bounds_the_update(tmp_path, tiny_model_dir, reviews):
    model = tiny_model_dir("llama")
    before = one_sgd_step(tmp_path / "b", model, reviews, "train.lr=1e-30", "train.batch_size=8")  # ~ no step
    clipped = one_sgd_step(tmp_path / "c", model, reviews, "train.lr=1.0", "train.batch_size=8", "train.max_grad_norm=0.001")
    free = one_sgd_step(tmp_path / "f", model, reviews, "train.lr=1.0", "train.batch_size=8", "train.max_grad_norm=null")

    def norm(after):
        return torch.sqrt(sum(((after[n] - before[n]) ** 2).sum() for n in before)).item()

    assert norm(clipped) == pytest.approx(1e-3, rel=1e-2)  # SGD: update = lr * clipped gradient
    assert norm(free) > 10 * norm(clipped)


def test_label_smoothing_changes_the_loss(tmp_path, tiny_model_dir, reviews):
    def first_loss(sub, smoothing):
        run = run_train(tmp_path / sub, tiny_model_dir("gpt2"), reviews, f"task.label_smoothing={smoothing}")
        return json.loads((run.path / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    assert first_loss("a", 0.0) != pytest.approx(first_loss("b", 0.3), abs=1e-4)


def test_early_stopping_stops_when_the_metric_stalls(tmp_path, tiny_model_dir, reviews):
    run = run_train(tmp_path, tiny_model_dir("gpt2"), reviews, "train.lr=1e-12", "train.max_steps=10",
                    "train.eval_every=1", "train.early_stopping.patience=2")
    assert run.metrics["train"]["stopped_early"] and run.metrics["train"]["steps"] == 3


def test_effective_batch_size_sets_grad_accum_or_says_what_to_use():
    cfg = load_config(None, ["train.batch_size=4", "train.effective_batch_size=16"])
    assert cfg.train.grad_accum == 4
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.batch_size=16", "train.effective_batch_size=40"])
    assert "train.effective_batch_size: 40 is not a multiple of train.batch_size (16); use 32 or 48" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.batch_size=4", "train.effective_batch_size=16", "train.grad_accum=2"])
    assert "set only one of them" in str(e.value)


def test_lora_on_a_model_from_scratch_is_refused_up_front():
    with pytest.raises(ConfigError) as e:  # the run would save an adapter whose random base is lost
        load_config(None, ["strategy.name=lora", "model.arch.family=llama"])
    assert "strategy.name: lora adapts pre-trained weights" in str(e.value)
