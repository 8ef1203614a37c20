"""Real (non-padding) tokens per second: tailor's fit() vs the Hugging Face Trainer's defaults.

Same model, same examples (varied length), same batch size, same precision (bf16 autocast where
the CPU has it), one command: each side trains in a fresh child process of its own (spawned one after
the other), so each peak memory (peak resident set of that process, or the allocator peak on GPU) is
that side's alone. Prints both throughputs, the ratio, and both peak memories.

    python benchmarks/lm_throughput.py --text ../shared/data/tinyshakespeare/input.txt
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from tailor.config import RunConfig
from tailor.data.batching import pack
from tailor.models.heads import TailorModel
from tailor.models.load import TINY_DIR, fuse_activations
from tailor.tasks.lm import LanguageModelling
from tailor.train.loop import fit, precision_of
from tailor.train.memory import peak_memory_mb, reset_peak_memory


def examples(text_file: Path | None, tok, n: int, seed: int) -> list[list[int]]:
    """n examples of 20-256 tokens: consecutive lines of the text, or generated documents."""
    rng = np.random.default_rng(seed)
    if text_file is not None:
        ids = tok(text_file.read_text(), add_special_tokens=False)["input_ids"]
    else:
        from tailor.data.synthetic import build_world, corpus_documents

        docs = corpus_documents(build_world(0), 3000, seed=123)
        ids = [t for d in docs for t in tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
    out, pos = [], 0
    for _ in range(n):
        length = int(rng.integers(20, 257))
        out.append(ids[pos : pos + length])
        pos += length
    return out


def run_trainer(model_dir: Path, exs: list[list[int]], tok, batch: int, bf16: bool) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ds = Dataset.from_dict({"input_ids": exs})
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1,
                                 bf16=bf16, use_cpu=not torch.cuda.is_available(), report_to=[],
                                 save_strategy="no", logging_strategy="no", dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=ds,
                          data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
        reset_peak_memory()
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
    real = sum(len(e) for e in exs)
    return real / seconds, peak_memory_mb()


def run_tailor(model_dir: Path, exs: list[list[int]], tok, batch: int, bf16: bool) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)  # the model as `tailor train` loads it: fused tanh-GELU (models/load.py)
    model = TailorModel(fuse_activations(AutoModelForCausalLM.from_pretrained(model_dir)))
    data = pack([np.asarray(e, np.int32) for e in exs], 256, tok.eos_token_id)
    cfg = RunConfig(task={"type": "lm"}, train={"epochs": 1, "batch_size": batch, "lr": 5e-5,
                                                "precision": "bf16" if bf16 else "fp32", "log_every": 10**9},
                    eval={"baseline": False}).resolved()
    with tempfile.TemporaryDirectory() as out:
        reset_peak_memory()
        t = time.perf_counter()
        result = fit(model, LanguageModelling(cfg.task, cfg), data, None, cfg, tok.pad_token_id,
                     lambda row: None, Path(out), Console(quiet=True))
        seconds = time.perf_counter() - t
    real = sum(len(e) for e in exs)  # the same real tokens (packing adds only one eos per example)
    assert result.tokens >= real
    return real / seconds, peak_memory_mb()


def _side(fn, model_dir: Path, exs: list[list[int]], batch: int, bf16: bool, out) -> None:
    """Child process body: load the tokenizer, train one side, send (tokens/s, peak MB) back."""
    from transformers import AutoTokenizer

    torch.set_num_threads(out.threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out.conn.send(fn(model_dir, exs, tok, batch, bf16))


class _Out:
    def __init__(self, conn, threads: int) -> None:
        self.conn, self.threads = conn, threads


def in_child(fn, model_dir: Path, exs: list[list[int]], batch: int, bf16: bool) -> tuple[float, float]:
    """Run one side in a freshly spawned process; its peak memory is its own."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_side, args=(fn, model_dir, exs, batch, bf16, _Out(send, torch.get_num_threads())))
    proc.start()
    result = recv.recv()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{fn.__name__} failed in its child process (exit {proc.exitcode})")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=TINY_DIR, help="model directory (default tailor-tiny)")
    ap.add_argument("--text", type=Path, default=None, help="plain text to cut examples from (default: generated)")
    ap.add_argument("--examples", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    exs = examples(args.text, tok, args.examples, seed=0)
    bf16 = precision_of(RunConfig().train) == "bf16"
    hf_tps, hf_mem = in_child(run_trainer, args.model, exs, args.batch_size, bf16)
    tl_tps, tl_mem = in_child(run_tailor, args.model, exs, args.batch_size, bf16)
    print(f"precision: {'bf16 autocast' if bf16 else 'fp32'}; {len(exs)} examples, "
          f"{sum(map(len, exs)):,} real tokens, batch {args.batch_size}")
    print(f"HF Trainer (defaults): {hf_tps:8.0f} real tokens/s, peak memory {hf_mem:.0f} MB")
    print(f"tailor fit():          {tl_tps:8.0f} real tokens/s, peak memory {tl_mem:.0f} MB")
    print(f"ratio tailor / Trainer: {tl_tps / hf_tps:.2f}x")


if __name__ == "__main__":
    main()
