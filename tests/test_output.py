"""What `tailor train` prints: a strategy summary of a few lines whatever the depth; no library noise."""

from __future__ import annotations

import random

import yaml
from _lm import tailor

from tailor.strategies import summary_lines


def groups(n_blocks: int, decay: float = 1.0) -> dict:
    out = [{"name": "embeddings", "params": 1000, "lr": 1e-3 * decay**n_blocks, "weight_decay": 0.01}]
    for i in range(n_blocks):
        lr = 1e-3 * decay ** (n_blocks - 1 - i)
        out += [{"name": f"block {i}", "params": 100, "lr": lr, "weight_decay": 0.01},
                {"name": f"block {i} (no decay)", "params": 2, "lr": lr, "weight_decay": 0.0}]
    out += [{"name": "final (no decay)", "params": 4, "lr": 1e-3, "weight_decay": 0.0},
            {"name": "task layers", "params": 50, "lr": 1e-3, "weight_decay": 0.01}]
    return {"groups": out}


def test_thirty_blocks_are_one_line_with_their_total_and_learning_rate():
    lines = summary_lines(groups(30))
    assert len(lines) == 4
    assert lines[1].split()[:3] == ["blocks", "0-29", "3,060"] and "lr 1.0e-03" in lines[1]
    assert "(0 on norms, biases)" in lines[1]


def test_layerwise_decay_shows_the_range_of_learning_rates():
    (_, blocks, *_) = summary_lines(groups(30, decay=0.8))
    assert "lr 1.5e-06 .. 1.0e-03 (by depth)" in blocks  # block 0: 1e-3 * 0.8**29


def test_top_k_blocks_start_where_training_starts():
    info = {"groups": [g for g in groups(30)["groups"] if g["name"].startswith(("block 28", "block 29"))]}
    assert summary_lines(info)[0].startswith("blocks 28-29")


def test_train_prints_no_library_progress_bars_or_length_warnings(tmp_path, tiny_model_dir):
    rng = random.Random(0)
    words = "the pump valve was checked and replaced by a quiet engineer today".split()
    text = tmp_path / "long.txt"  # documents far longer than the tokenizer's model_max_length (128)
    text.write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(400)) for _ in range(6)))
    cfg = {"output_dir": str(tmp_path / "runs"), "model": str(tiny_model_dir("llama")), "task": "lm",
           "data": {"train": str(text), "max_length": 32},
           "train": {"max_steps": 2, "batch_size": 4}, "eval": {"baseline": False}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = tailor("train", path)
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    for noise in ("Loading weights", "Token indices sequence length", "it/s]"):
        assert noise not in both, noise
    assert "strategy full" in both
    # the same run with the libraries left alone (the env may hold what an in-process CLI test set): the noise is there
    loud = tailor("train", path, env={"TAILOR_VERBOSE": "1", "TRANSFORMERS_VERBOSITY": "warning"})
    assert "Token indices sequence length" in loud.stdout + loud.stderr
