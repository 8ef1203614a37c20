"""`tailor data inspect`: examples as the model sees them, with the trained tokens highlighted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from tailor.data.batching import IGNORE, Encoded
from tailor.data.readers import Problem, apply_field_map, read_records

TRAINED = "bold black on green3"
ANSWER = "bold black on yellow"
CONTEXT = "grey62"


@dataclass
class Inspection:
    encoded: Encoded
    records: list[dict]
    problems: list[Problem]
    tok: Any
    max_length: int


def inspect_file(file: Path, task_type: str, config: Path | None, overrides: list[str], n: int) -> Inspection:
    """Encode the first `n` usable records of `file` exactly as training would."""
    from tailor.config import load_config
    from tailor.models.load import load_tokenizer_for
    from tailor.tasks import build_task
    from tailor.tasks.base import encode_split

    over = [f"data.train={file}", *overrides]
    if config is None:
        over.append(f"task.type={task_type}")
    cfg = load_config(config, over)
    tok, _ = load_tokenizer_for(cfg.model)
    task = build_task(cfg.task, cfg)
    max_length = cfg.data.max_length or min(getattr(tok, "model_max_length", 1024) or 1024, 2048)
    records, problems = read_records(file)
    if cfg.data.fields:
        records, more = apply_field_map(records, cfg.data.fields)
        problems += more
    task.fit_labels(records)
    encoded = encode_split(task, records[: max(n, 0) * 4 or 1], tok, max_length)
    problems += getattr(task, "encode_problems", lambda: [])()
    return Inspection(encoded, records, problems, tok, max_length)


def _runs(flags: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, value) of each run of equal values."""
    cuts = [0, *(np.flatnonzero(np.diff(flags)) + 1).tolist(), len(flags)]
    return [(a, b, int(flags[a])) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def render_example(ins: Inspection, row: int) -> tuple[Text, int]:
    """The example's text, trained tokens (or the answer span) highlighted; and the highlighted count."""
    ids, labels = ins.encoded.example(row)
    fields = {k: v[row] for k, v in ins.encoded.fields.items()}
    flags = np.zeros(len(ids), dtype=np.int8)
    if labels is not None:
        flags[labels != IGNORE] = 1
    elif "start" in fields and "end" in fields and int(fields["start"]) < len(ids) - 1:
        flags[int(fields["start"]) : int(fields["end"]) + 1] = 2
    text = Text()
    for a, b, flag in _runs(flags):
        piece = ins.tok.decode(ids[a:b].tolist(), skip_special_tokens=False)
        text.append(piece, style={0: CONTEXT, 1: TRAINED, 2: ANSWER}[flag])
    return text, int((flags > 0).sum())


def rows_to_show(enc: Encoded, n: int) -> list[int]:
    """The first `n` examples; for windowed tasks (QA), one window per record: the one holding the answer."""
    if "rid" not in enc.fields:
        return list(range(min(n, len(enc))))
    rows = []
    for rid in list(dict.fromkeys(enc.fields["rid"].tolist()))[:n]:
        windows = np.flatnonzero(enc.fields["rid"] == rid)
        hits = [int(w) for w in windows if int(enc.fields["start"][w]) < int(enc.lengths[w]) - 1]
        rows.append(hits[0] if hits else int(windows[0]))
    return rows


def render_inspection(ins: Inspection, console: Console, n: int) -> None:
    """Problems, then up to `n` examples, then the legend."""
    for p in [p for p in ins.problems if p.severity == "error"][:20]:
        console.print(Text.assemble(("error: ", "red"), str(p)))
    rows = rows_to_show(ins.encoded, n)
    shown = len(rows)
    for row in rows:
        record = ins.records[int(ins.encoded.index[row])] if ins.encoded.index is not None else {}
        text, marked = render_example(ins, row)
        where = f"{record.get('_file', '?')}:{record.get('_line', '?')}"
        length = int(ins.encoded.lengths[row])
        console.rule(f"example {rows.index(row) + 1}  {where}  {length} tokens, {marked} highlighted", style="blue")
        console.print(text, highlight=False)
    if not shown:
        console.print("no usable examples to show", style="yellow")
    console.rule(style="blue")
    marked = [("trained tokens", TRAINED), " carry the loss   "] if ins.encoded.labels is not None else []
    if "start" in ins.encoded.fields:
        marked += [("answer span", ANSWER), " is the start/end target   "]
    console.print(Text.assemble("legend: ", *marked, ("other tokens", CONTEXT), " are seen but not trained"))
    console.print(f"max_length {ins.max_length}; tokens are shown exactly as encoded, special tokens included",
                  highlight=False)
