"""Real English that tailor never generated: pre-train on books, fine-tune on SST-2, against two references.

    python benchmarks/real_english.py --seeds 5                        # ../shared/data; about 70 minutes on 2 cores
    python benchmarks/real_english.py --train-examples 2000 --epochs 8 --lrs 3e-4,1e-3 --strategies full,llrd
    python benchmarks/real_english.py --pretrain-steps 100 --train-examples 2000   # a quick look
The pre-trained model is kept in OUT/english-tiny and reused by later calls with the same --out.

1. `tailor pretrain` on five Project Gutenberg books, tinyshakespeare and the SST-2 training sentences as
   unlabelled text (../shared/data; sentences that occur in dev.tsv left out; by default the books are first
   rewritten the way SST-2 is written: lower case, clitics and punctuation split off): a BPE tokenizer and
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
import re
import statistics
from pathlib import Path

from rich.console import Console

from tailor.api import train
from tailor.config import RunConfig
from tailor.data.check import normalize_text
from tailor.pretrain import PretrainConfig, pretrain

ARCH = {"family": "gpt2", "n_layer": 4, "n_embd": 256, "n_head": 4, "context": 256}
STRATEGIES = {"full": {"name": "full"},  # --strategies: each side keeps its best on validation
              "llrd": {"name": "llrd", "decay": 0.7, "head_lr_mult": 3.0}}


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


_QUOTES = str.maketrans({"\u2018": "` ", "\u2019": "'", "\u201c": " `` ", "\u201d": " '' ", "\u2014": " -- ", "_": " "})


def sst2_style(text: str) -> str:
    """Text written the way SST-2 is: lower case, punctuation and clitics split off ("does n't", "film 's")."""
    text = text.translate(_QUOTES).lower()
    text = re.sub(r'"(?=\w)', "`` ", text).replace('"', " ''")
    text = re.sub(r"(\w)n't\b", r"\1 n't", text)
    text = re.sub(r"(\w)'(s|re|ve|ll|d|m)\b", r"\1 '\2", text)
    text = re.sub(r"([,.;:!?()]|--)", r" \1 ", text)
    return " ".join(text.split())


def styled_books(data: Path, out: Path) -> Path:
    """The books and tinyshakespeare, one paragraph per record, rewritten by sst2_style."""
    from tailor.data.readers import iter_text_documents

    path = out / "books-sst2-style.jsonl"
    with path.open("w") as fh:
        for doc in iter_text_documents([data / "gutenberg", data / "tinyshakespeare"]):
            fh.write(json.dumps({"text": sst2_style(doc)}) + "\n")
    return path


def pretrain_model(data: Path, out: Path, steps: int, unlabelled: Path, style: str,
                   console: Console) -> tuple[Path, dict]:
    """OUT/english-tiny, pre-trained unless an earlier call left it there, and how it was made."""
    model = out / "english-tiny"
    if (model / "config.json").is_file():
        made = json.loads((out / "english-tiny.json").read_text())
        console.print(f"using the model pre-trained earlier ({made}; --pretrain-steps, --corpus-style ignored): {model}")
        return model, made
    books = [styled_books(data, out)] if style == "sst2" else [data / "gutenberg", data / "tinyshakespeare"]
    cfg = PretrainConfig.model_validate({
        "name": "english-tiny", "output_dir": str(out / "runs"), "export": str(model), "seed": 0,
        "corpus": {"files": [*map(str, books), str(unlabelled)]},
        "vocab_size": 4096, "arch": ARCH, "validation": 0.01, "test": 0.01,
        "train": {"epochs": 100, "max_steps": steps, "batch_size": 32, "lr": 2e-3, "schedule": "cosine",
                  "warmup": 0.03, "weight_decay": 0.1, "eval_every": max(steps // 4, 1), "log_every": 20},
        "eval": {"batch_size": 64},
    })
    pretrain(cfg, console)
    made = {"steps": steps, "corpus_style": style}
    (out / "english-tiny.json").write_text(json.dumps(made))
    return model, made


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


def classify(name: str, model: dict, train_file: Path, test_file: Path, out: Path, args, strategy: str, lr: float,
             seed: int, baseline: bool, console: Console) -> dict:
    cfg = RunConfig.model_validate({
        "name": name, "output_dir": str(out / "runs"), "seed": seed, "model": model,
        "task": {"type": "classification", "method": args.method, "prompt": "Review: {text}\nSentiment:",
                 "labels": ["0", "1"], "label_words": {"0": "bad", "1": "good"}},
        "data": {"train": [str(train_file)], "test": [str(test_file)], "fields": {"text": "sentence"},
                 "split": {"validation": 500, "test": 0}},
        "strategy": STRATEGIES[strategy],
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
    ap.add_argument("--pretrain-steps", type=int, default=2000)
    ap.add_argument("--corpus-style", default="sst2", choices=["sst2", "raw"],
                    help="sst2: the books rewritten like SST-2 (lower case, split clitics) before pre-training")
    ap.add_argument("--train-examples", type=int, default=8000)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--lrs", default="3e-4", help="comma-separated; each side keeps its best on validation")
    ap.add_argument("--strategies", default="full", help=f"comma-separated, of {', '.join(STRATEGIES)}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--method", default="head", choices=["head", "generative"])
    args = ap.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    if unknown := set(args.strategies.split(",")) - STRATEGIES.keys():
        ap.error(f"--strategies: unknown {', '.join(sorted(unknown))}; choose from {', '.join(STRATEGIES)}")
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, unlabelled = sst2_texts(args.data, args.out)
    model, made = pretrain_model(args.data, args.out, args.pretrain_steps, unlabelled, args.corpus_style, console)
    train_file = sst2_subset(rows, args.out, args.train_examples, seed=0)
    test_file = args.data / "sst2" / "dev.tsv"
    sides = {"pretrained": {"path": str(model)},
             "scratch": {"path": str(model), "tokenizer": str(model), "arch": ARCH}}
    settings = [(strategy, lr) for strategy in args.strategies.split(",") for lr in lrs]
    grid: dict[str, dict[str, list[dict]]] = {side: {} for side in sides}
    baseline, n_test = None, 0
    for side, model_cfg in sides.items():
        for strategy, lr in settings:
            for seed in range(args.seeds):
                first = baseline is None and side == "pretrained"
                name = f"sst2-{args.train_examples}-{args.method}-{args.epochs:g}ep-{side}-{strategy}-lr{lr:g}-s{seed}"
                m = classify(name, model_cfg, train_file, test_file, args.out, args, strategy, lr, seed, first, console)
                baseline = m["baseline"]["test"] if first else baseline
                n_test = m["data"]["splits"]["test"]
                grid[side].setdefault(f"{strategy} {lr:g}", []).append(m["fine_tuned"])
    best = {side: max(by_setting, key=lambda k: statistics.fmean(m["validation"]["accuracy"] for m in by_setting[k]))
            for side, by_setting in grid.items()}
    chosen = {side: [m["test"] for m in grid[side][best[side]]] for side in sides}
    wins = sum(p["accuracy"] > s["accuracy"] for p, s in zip(chosen["pretrained"], chosen["scratch"], strict=True))
    table = [("zero-shot (pre-trained, label likelihood)", "-", [baseline]),
             ("from scratch, fine-tuned", best["scratch"], chosen["scratch"]),
             ("pre-trained on real text, fine-tuned", best["pretrained"], chosen["pretrained"])]
    lines = ["# Real English: SST-2 after `tailor pretrain` on books and unlabelled SST-2 text", "",
             f"Pre-training: {made['steps']} steps x 32 x 256 tokens on ../shared/data gutenberg + "
             f"tinyshakespeare (corpus style: {made['corpus_style']}) + SST-2 train sentences without labels. Fine-tuning: "
             f"{args.train_examples} SST-2 train sentences (500 held out for validation), {args.epochs:g} epochs, "
             f"batch 32, {args.method} method; each side's strategy and learning rate are the best of {args.strategies} x "
             f"{args.lrs} by mean validation accuracy; mean ± std over {args.seeds} seeds. Test: SST-2 dev ({n_test} "
             "sentences).", "",
             "| model | strategy, lr | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {lr} | {mean_std([m['accuracy'] for m in ms])} | {mean_std([m['macro_f1'] for m in ms])} |"
              for name, lr, ms in table]
    pairs = ", ".join(f"{p['accuracy']:.4f} vs {s['accuracy']:.4f}"
                      for p, s in zip(chosen["pretrained"], chosen["scratch"], strict=True))
    lines += ["", f"Paired by seed (same split, same batch order): pre-trained above scratch on {wins} of {args.seeds} "
              f"seeds (test accuracy, pre-trained vs scratch: {pairs}).",
              "", "All settings (validation accuracy / test accuracy, mean over seeds):", "",
              "| side | strategy, lr | validation | test |", "|---|---:|---:|---:|"]
    lines += [f"| {side} | {k} | {statistics.fmean(m['validation']['accuracy'] for m in ms):.4f} | "
              f"{statistics.fmean(m['test']['accuracy'] for m in ms):.4f} |"
              for side, by_setting in grid.items() for k, ms in by_setting.items()]
    stem = args.out / (f"real_english-{args.train_examples}" + ("" if args.method == "head" else f"-{args.method}")
                       + ("" if args.epochs == 3 else f"-{args.epochs:g}ep")
                       + ("" if args.strategies == "full" else "-" + args.strategies.replace(",", "-")))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"best": best, "table": table}, indent=1, default=str))
    console.print("\n".join(lines), highlight=False)


if __name__ == "__main__":
    main()
