"""Real English that tailor never generated: pre-train on books, fine-tune on SST-2, against two references.

    python benchmarks/real_english.py                      # ../shared/data; about 40 minutes on 2 cores
    python benchmarks/real_english.py --train-examples 2000 --lrs 1e-4,3e-4,1e-3   # less data, lr chosen per side
    python benchmarks/real_english.py --pretrain-steps 100 --train-examples 2000   # a quick look

1. `tailor pretrain` on five Project Gutenberg books, tinyshakespeare and the SST-2 training sentences as
   unlabelled text (../shared/data; sentences that occur in dev.tsv left out): a BPE tokenizer and
   tailor-tiny's architecture (GPT-2, 4 layers, width 256) trained from scratch. Reading the task's own
   unlabelled text is the ULMFiT recipe; the labels are never seen in this step.
2. SST-2 sentence sentiment (binary): N training sentences sampled from train.tsv (sentences that also
   occur in dev.tsv are left out first, so nothing leaks), validation split by tailor, dev.tsv as test.
3. Three results on the same test split (SST-2 dev, 872 sentences):
   - zero-shot: the pre-trained model picks " bad" or " good" after the prompt (label likelihood);
   - from scratch: the same architecture and tokenizer, random weights, fine-tuned on the same data;
   - pre-trained + fine-tuned: the model from step 1, fine-tuned with the same settings.
   The two fine-tuned results are means over --seeds seeds (the seed changes the head's initialisation,
   the scratch model's weights, the batch order and which 500 sentences are held out for validation; both
   models see the same split for a given seed, and the test set is always the same).
Writes OUT/real_english-N.md (.json) and prints the table. Nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
from pathlib import Path

from rich.console import Console

from tailor.api import train
from tailor.config import RunConfig
from tailor.data.check import normalize_text
from tailor.pretrain import PretrainConfig, pretrain

ARCH = {"family": "gpt2", "n_layer": 4, "n_embd": 256, "n_head": 4, "context": 256}


def sst2_texts(data: Path, out: Path) -> tuple[list[dict], Path]:
    """SST-2 train rows whose sentence does not occur in dev.tsv, and the sentences alone as a JSONL corpus."""
    with (data / "sst2" / "dev.tsv").open() as fh:
        dev_texts = {normalize_text(r["sentence"]) for r in csv.DictReader(fh, delimiter="\t")}
    with (data / "sst2" / "train.tsv").open() as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if normalize_text(r["sentence"]) not in dev_texts]
    corpus = out / "sst2-unlabelled.jsonl"
    with corpus.open("w") as fh:
        fh.writelines(json.dumps({"text": r["sentence"].strip()}) + "\n" for r in rows)
    return rows, corpus


def pretrain_model(data: Path, out: Path, steps: int, unlabelled: Path, console: Console) -> Path:
    model = out / "english-tiny"
    if (model / "config.json").is_file():
        console.print(f"using the model pre-trained earlier: {model}")
        return model
    cfg = PretrainConfig.model_validate({
        "name": "english-tiny", "output_dir": str(out / "runs"), "export": str(model), "seed": 0,
        "corpus": {"files": [str(data / "gutenberg"), str(data / "tinyshakespeare"), str(unlabelled)]},
        "vocab_size": 4096, "arch": ARCH, "validation": 0.01, "test": 0.01,
        "train": {"epochs": 100, "max_steps": steps, "batch_size": 32, "lr": 2e-3, "schedule": "cosine",
                  "warmup": 0.03, "weight_decay": 0.1, "eval_every": max(steps // 4, 1), "log_every": 20},
        "eval": {"batch_size": 64},
    })
    pretrain(cfg, console)
    return model


def sst2_subset(rows: list[dict], out: Path, n: int, seed: int) -> Path:
    """N random rows of SST-2 train written as a TSV file."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    path = out / f"sst2-train-{n}.tsv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["sentence", "label"], delimiter="\t")
        w.writeheader()
        w.writerows({"sentence": r["sentence"].strip(), "label": r["label"]} for r in rows[:n])
    return path


def classify(name: str, model: dict, train_file: Path, test_file: Path, out: Path, args, lr: float, seed: int,
             baseline: bool, console: Console) -> dict:
    cfg = RunConfig.model_validate({
        "name": name, "output_dir": str(out / "runs"), "seed": seed, "model": model,
        "task": {"type": "classification", "method": args.method, "prompt": "Review: {text}\nSentiment:",
                 "labels": ["0", "1"], "label_words": {"0": "bad", "1": "good"}},
        "data": {"train": [str(train_file)], "test": [str(test_file)], "fields": {"text": "sentence"},
                 "split": {"validation": 500, "test": 0}},
        "strategy": "full",
        "train": {"epochs": args.epochs, "batch_size": 32, "lr": lr, "metric": "accuracy"},
        "eval": {"baseline": baseline},
    }).resolved()
    return train(cfg, console).metrics


def mean_std(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/real-english"))
    ap.add_argument("--pretrain-steps", type=int, default=800)
    ap.add_argument("--train-examples", type=int, default=8000)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--lrs", default="3e-4", help="comma-separated; each side keeps its best on validation")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--method", default="head", choices=["head", "generative"])
    args = ap.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, unlabelled = sst2_texts(args.data, args.out)
    model = pretrain_model(args.data, args.out, args.pretrain_steps, unlabelled, console)
    train_file = sst2_subset(rows, args.out, args.train_examples, seed=0)
    test_file = args.data / "sst2" / "dev.tsv"
    sides = {"pretrained": {"path": str(model)},
             "scratch": {"path": str(model), "tokenizer": str(model), "arch": ARCH}}
    grid: dict[str, dict[float, list[dict]]] = {side: {} for side in sides}
    baseline, n_test = None, 0
    for side, model_cfg in sides.items():
        for lr in lrs:
            for seed in range(args.seeds):
                first = baseline is None and side == "pretrained"
                m = classify(f"sst2-{args.train_examples}-{args.method}-{side}-lr{lr:g}-s{seed}", model_cfg, train_file, test_file,
                             args.out, args, lr, seed, first, console)
                baseline = m["baseline"]["test"] if first else baseline
                n_test = m["data"]["splits"]["test"]
                grid[side].setdefault(lr, []).append(m["fine_tuned"])
    best = {side: max(by_lr, key=lambda lr: statistics.fmean(m["validation"]["accuracy"] for m in by_lr[lr]))
            for side, by_lr in grid.items()}
    table = [("zero-shot (pre-trained, label likelihood)", "-", [baseline]),
             ("from scratch, fine-tuned", f"{best['scratch']:g}", [m["test"] for m in grid["scratch"][best["scratch"]]]),
             ("pre-trained on real text, fine-tuned", f"{best['pretrained']:g}",
              [m["test"] for m in grid["pretrained"][best["pretrained"]]])]
    lines = ["# Real English: SST-2 after `tailor pretrain` on books and unlabelled SST-2 text", "",
             f"Pre-training: {args.pretrain_steps} steps x 32 x 256 tokens on ../shared/data gutenberg + "
             "tinyshakespeare + SST-2 train sentences without labels. Fine-tuning: "
             f"{args.train_examples} SST-2 train sentences (500 held out for validation), {args.epochs:g} epochs, "
             f"batch 32, full strategy, {args.method} method; each side's learning rate is the best of {args.lrs} by mean "
             f"validation accuracy; mean ± std over {args.seeds} seeds. Test: SST-2 dev ({n_test} sentences).", "",
             "| model | lr | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {lr} | {mean_std([m['accuracy'] for m in ms])} | {mean_std([m['macro_f1'] for m in ms])} |"
              for name, lr, ms in table]
    lines += ["", "All settings (validation accuracy / test accuracy, mean over seeds):", "",
              "| side | lr | validation | test |", "|---|---:|---:|---:|"]
    lines += [f"| {side} | {lr:g} | {statistics.fmean(m['validation']['accuracy'] for m in ms):.4f} | "
              f"{statistics.fmean(m['test']['accuracy'] for m in ms):.4f} |"
              for side, by_lr in grid.items() for lr, ms in by_lr.items()]
    stem = args.out / f"real_english-{args.train_examples}{'' if args.method == 'head' else '-' + args.method}"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"best_lr": best, "table": table}, indent=1, default=str))
    console.print("\n".join(lines), highlight=False)


if __name__ == "__main__":
    main()
