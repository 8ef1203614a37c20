"""tailor's side of each training job: `tailor.api.train` with a RunConfig built here, as `tailor train` runs it.

The run is the user's: the GGUF file as model.path, strategy full, bf16 autocast where the CPU has it. Only what
would distort a timing is switched off: no baseline scoring, no validation split (so no evaluation during
training), checkpoints only at the end (tailor always saves one there; it is outside tailor's train_seconds).
The training loop is timed by tailor itself (FitResult.train_seconds: each step from collation to optimiser
step); fit() is also wrapped to time its wall clock and to read the peak memory of its span alone.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from realbench.machine import peak_memory_mb, reset_peak_memory
from realbench.measure import TokenCount


def run_config(spec: dict) -> dict:
    """The RunConfig (as a dict) for this job; every setting shared with the other sides comes from spec."""
    kind = spec["kind"]
    task = {
        "classification": {
            "type": "classification",
            "method": "head",
            "prompt": spec.get("prompt"),
        },
        "chat": {"type": "chat", "loss_on": "assistant"},
        "lm": {"type": "lm"},
    }[kind]
    data = {
        "train": [spec["train"]],
        "split": {"validation": 0, "test": 0},
        "max_length": spec["max_length"],
    }
    if kind == "classification":
        data["test"] = [spec["test"]]
    train = {
        "epochs": spec["epochs"],
        "batch_size": spec["batch_size"],
        "lr": spec["lr"],
        "precision": "bf16" if spec["precision"] == "bf16" else "fp32",
        "save_every": 10**9,
        "gradient_checkpointing": spec["gradient_checkpointing"],
    }
    if kind == "lm":
        train["packing"] = True
    return {
        "name": f"{spec['job']}-tailor",
        "output_dir": str(Path(spec["work"]) / "runs"),
        "seed": spec["seed"],
        "model": {"path": spec["gguf"]},
        "task": task,
        "data": data,
        "strategy": {"name": "full"},
        "train": train,
        "eval": {"baseline": False, "batch_size": 64},
    }


def train_tailor(spec: dict) -> dict:
    """Child process body: one `tailor.api.train` run; returns its figures (and, for chat / lm, the model dir)."""
    from rich.console import Console

    import tailor.api as api
    import tailor.train.loop as loop
    from tailor.config import RunConfig

    counts, seen = TokenCount(), {}
    real_fit, real_collate = api.fit, loop.collate

    def counting_collate(data, rows, pad_id):
        batch = real_collate(data, rows, pad_id)
        counts.add(batch)
        return batch

    def timed_fit(*args, **kwargs):
        seen["load_peak_mb"] = peak_memory_mb()  # data, tokenizer and model loaded
        reset_peak_memory()
        loop.collate = counting_collate  # training batches only: evaluation collates through tailor.data.batching
        start = time.perf_counter()
        try:
            result = real_fit(*args, **kwargs)
        finally:
            loop.collate = real_collate
        seen["fit_wall_s"] = time.perf_counter() - start
        seen["peak_mb"] = peak_memory_mb()
        return result

    api.fit = timed_fit
    cfg = RunConfig.model_validate(run_config(spec)).resolved()
    run = api.train(cfg, console=Console(file=sys.stdout, width=120))
    if "fit_wall_s" not in seen:
        raise RuntimeError(
            "tailor.api.train did not call tailor.api.fit: update benchmarks/realbench/tailor_sides.py"
        )
    fit = run.metrics["train"]
    shutil.rmtree(
        run.path / "checkpoints", ignore_errors=True
    )  # 1.6 GB of weights and optimiser state
    out = {
        "examples": run.metrics["data"]["splits"]["train"],
        "epochs": spec["epochs"],
        "steps": fit["steps"],
        "train_s": fit["train_seconds"],
        "wall_s": round(seen["fit_wall_s"], 2),
        "peak_mb": seen["peak_mb"],
        "load_peak_mb": seen["load_peak_mb"],
        "counts": counts.to_json(),
        "own_count": {"tokens": fit["tokens"], "tokens_per_second": fit["tokens_per_second"]},
        "run": str(run.path),
        "model_dir": str(run.path / "model"),
    }
    if (
        counts.batches == 0
    ):  # the loop no longer collates through tailor.train.loop.collate: use its own count
        out["counts"] = {"real": fit["tokens"], "trained": None, "note": "tailor's own token count"}
    if spec["kind"] == "classification":
        out["metric"] = {"test accuracy": run.metrics["fine_tuned"]["test"]["accuracy"]}
        out["test_examples"] = run.metrics["data"]["splits"]["test"]
    return out
