"""A tiny language-modelling run for the resume, registry and guard tests: small data, fp32, a few steps.

16 short documents packed into 32-token blocks give ~7 batches of 4 per epoch, so with grad_accum 2 an
optimiser step straddles each epoch boundary; gpt2's dropout (0.1) makes the result depend on the RNG state.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

WORDS = "the a small red blue quiet machine valve pump filter was is checked replaced cleaned noisy fine".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run several times faster on one thread when the 2 cores are shared; subprocesses get the
    same (OMP_NUM_THREADS=1 in `tailor`), so runs compared bit for bit use the same arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_config(tmp_path: Path, model_dir: Path, name: str = "lm", **train) -> Path:
    """A run config (and its corpus) in tmp_path; runs go to tmp_path/runs."""
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + "." for _ in range(16)]
    corpus = tmp_path / "notes.txt"
    corpus.write_text("\n\n".join(docs) + "\n")
    cfg = {
        "name": name, "output_dir": str(tmp_path / "runs"), "model": str(model_dir), "task": "lm", "seed": 0,
        "data": {"train": str(corpus), "max_length": 32},
        "train": {"max_steps": 10, "batch_size": 4, "grad_accum": 2, "lr": 3e-3, "log_every": 1, "eval_every": 3,
                  "save_every": 2, "precision": "fp32", **train},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_tailor(*args: object, env: dict | None = None) -> subprocess.Popen:
    """`python -m tailor.cli ...` started in a new process (so that it can really be killed)."""
    return subprocess.Popen([sys.executable, "-m", "tailor.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def tailor(*args: object, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """`python -m tailor.cli ...` in a new process, to its end."""
    proc = start_tailor(*args, env=env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def curve(run: Path) -> list[dict]:
    """metrics.jsonl without the timing column (the one thing that differs between two identical runs)."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in rows]


def final_metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {"baseline": m["baseline"], "fine_tuned": m["fine_tuned"], "best_step": m["train"]["best_step"]}


def checkpoint_state(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())["loop"]
