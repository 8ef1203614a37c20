"""The suite's data: one set of files per job, written once and read by every side (nothing goes into the repo).

- classification: the first N SST-2 training sentences (whitespace stripped) and dev.tsv as the test set;
  every side wraps each sentence in the same prompt, SST2_PROMPT.
- chat: Alpaca records as conversational prompt/completion ({"prompt": [user message], "completion":
  [assistant message]}), a format tailor and TRL both read; records whose rendered conversation does not fit
  max_length are left out first, so no side truncates; then a seeded shuffle, the first `held` records held out.
- lm: tinyshakespeare cut at blank lines into speeches; a speech longer than max_length is cut at line ends into
  pieces that fit (with eos); the first N pieces train, the last `held` pieces (the end of the text) are held out.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

SST2_PROMPT = "Review: {text}\nSentiment:"
MARGIN = (
    8  # tokens kept free below max_length: tokenising a joined text may differ by a token or two
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _tsv(path: Path, limit: int | None) -> list[dict]:
    with path.open() as fh:
        rows = [
            {"text": r["sentence"].strip(), "label": int(r["label"])}
            for r in csv.DictReader(fh, delimiter="\t")
        ]
    return rows[:limit] if limit else rows


def sst2(data: Path, n_train: int, n_test: int | None, work: Path) -> dict:
    """SST-2: the first n_train training sentences, and dev.tsv (its first n_test rows, or all) as the test set."""
    train, test = (
        _tsv(data / "sst2" / "train.tsv", n_train),
        _tsv(data / "sst2" / "dev.tsv", n_test),
    )
    return {
        "train": str(write_jsonl(work / "sst2-train.jsonl", train)),
        "test": str(write_jsonl(work / "sst2-test.jsonl", test)),
        "n_train": len(train),
        "n_test": len(test),
        "prompt": SST2_PROMPT,
    }


def user_text(record: dict) -> str:
    """An Alpaca record's user turn: the instruction, and its input after a blank line when there is one."""
    return record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")


def conversation(record: dict) -> dict:
    """An Alpaca record as conversational prompt/completion."""
    return {
        "prompt": [{"role": "user", "content": user_text(record)}],
        "completion": [{"role": "assistant", "content": record["output"]}],
    }


def alpaca(
    data: Path, n_train: int | None, n_held: int, max_length: int, tok: Any, seed: int, work: Path
) -> dict:
    """Alpaca (alpaca_2k): conversations that fit max_length; `n_held` held out (seeded), up to n_train train."""
    records = json.loads((data / "alpaca_2k" / "alpaca_small.json").read_text())
    convs = [
        conversation(r)
        for r in records
        if r.get("output", "").strip() and r.get("instruction", "").strip()
    ]
    texts = [tok.apply_chat_template(c["prompt"] + c["completion"], tokenize=False) for c in convs]
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    fits = [c for c, n in zip(convs, lengths, strict=True) if n <= max_length - MARGIN]
    random.Random(seed).shuffle(fits)
    held, train = fits[:n_held], fits[n_held:]
    train = train[:n_train] if n_train else train
    return {
        "train": str(write_jsonl(work / "chat-train.jsonl", train)),
        "held": str(write_jsonl(work / "chat-held.jsonl", held)),
        "n_train": len(train),
        "n_held": len(held),
        "left_out_too_long": len(convs) - len(fits),
        "left_out_empty": len(records) - len(convs),
    }


def _pieces(speech: str, budget: int, tok: Any) -> list[str]:
    """A speech cut at line ends into pieces of at most `budget` tokens (a single longer line is dropped)."""
    lines = speech.split("\n")
    counts = [len(x) for x in tok(lines, add_special_tokens=False)["input_ids"]]
    pieces, current, used = [], [], 0
    for line, n in zip(lines, counts, strict=True):
        if current and used + n + 1 > budget:
            pieces.append("\n".join(current))
            current, used = [], 0
        if n + 1 <= budget:
            current.append(line)
            used += n + 1
    if current:
        pieces.append("\n".join(current))
    return pieces


def shakespeare(
    data: Path, n_train: int | None, n_held: int, max_length: int, tok: Any, work: Path
) -> dict:
    """tinyshakespeare as speeches that fit max_length (eos included): the first n_train train, the last n_held held out."""
    speeches = [
        s.strip()
        for s in (data / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
        if s.strip()
    ]
    pieces = [p for s in speeches for p in _pieces(s, max_length - MARGIN, tok)]
    held, rest = pieces[len(pieces) - n_held :], pieces[: len(pieces) - n_held]
    train = rest[:n_train] if n_train else rest
    return {
        "train": str(write_jsonl(work / "lm-train.jsonl", [{"text": t} for t in train])),
        "held": str(write_jsonl(work / "lm-held.jsonl", [{"text": t} for t in held])),
        "n_train": len(train),
        "n_held": len(held),
        "speeches": len(speeches),
        "pieces": len(pieces),
    }
