"""Checks before any compute is spent: schema, labels, duplicates and leakage, token statistics; a report."""

from __future__ import annotations

import difflib
import hashlib
import math
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tailor.data.readers import META, Problem

ROLES = ("system", "user", "assistant")


@dataclass
class FieldSpec:
    """A field every record of a task has (or may have, when not required)."""

    name: str
    kind: Literal["str", "label", "number", "messages", "answers"]
    required: bool = True


@dataclass
class Schema:
    """The fields of a task's records; `labels` is the allowed label set (None: learned from train)."""

    fields: list[FieldSpec]
    labels: list[str] | None = None


def _where(r: dict, i: int = 0) -> tuple[str, int]:
    return r.get("_file", "<data>"), r.get("_line", i + 1)


def _short(value: object, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _describe(value: object) -> str:
    kind = {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    return f"{kind.get(type(value), 'a number')} {_short(value)}"


def _check_str(value: object, record: dict, labels: list[str] | None) -> str | None:
    if not isinstance(value, str):
        return f"expected text, got {_describe(value)}"
    if not value.strip():
        return "is empty; fill it in or remove the record"
    return None


def _check_label(value: object, record: dict, labels: list[str] | None) -> str | None:
    # Labels may be text or integers (0/1 from JSON, "0"/"1" from CSV); they are compared as str(value).
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"expected a label (text or a whole number), got {_describe(value)}"
    name = str(value)
    if not name.strip():
        return "the label is empty; fill it in or remove the record"
    if labels is not None and name not in labels:
        close = difflib.get_close_matches(name, labels, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
        return f"{name!r} is not one of {shown} ({hint}fix the label or add it to task.labels)"
    return None


def _check_number(value: object, record: dict, labels: list[str] | None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"expected a number, got {_describe(value)}"
    try:
        number = float(value)
    except ValueError:
        return f"{_short(value)} is not a number"
    return None if math.isfinite(number) else f"{value!r} is not a finite number"


def _check_messages(value: object, record: dict, labels: list[str] | None) -> str | None:
    shape = 'a list of {"role": ..., "content": ...}'
    if isinstance(value, str):
        return f"expected {shape}, got text (conversations need JSONL, JSON or Parquet, not CSV)"
    if not isinstance(value, list) or not value:
        return f"expected a non-empty {shape}, got {_describe(value)}"
    for i, m in enumerate(value, 1):
        if not isinstance(m, dict):
            return f"message {i} is {_describe(m)}, not an object with role and content"
        if "role" not in m and "from" in m:
            return f"message {i} has ShareGPT's from/value; write role/content (system, user, assistant)"
        if m.get("role") not in ROLES:
            return f"message {i}: role {_short(m.get('role'))} is not one of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return f"message {i}: content must be text, got {_describe(m.get('content'))}"
    if not any(m["role"] == "assistant" for m in value):
        return (
            "has no assistant message, so nothing to learn from; add the reply or remove the record"
        )
    return None


def _check_answers(value: object, record: dict, labels: list[str] | None) -> str | None:
    shape = '{"text": [...], "answer_start": [...]} (SQuAD format)'
    if not isinstance(value, dict) or "text" not in value or "answer_start" not in value:
        return f"expected {shape}, got {_describe(value)}"
    texts, starts = value["text"], value["answer_start"]
    if not isinstance(texts, list) or not isinstance(starts, list):
        return f"text and answer_start must be lists, even for one answer: {shape}"
    if len(texts) != len(starts):
        return f"{len(texts)} answer texts but {len(starts)} answer_start values; give one per text"
    context = record.get("context")
    for text, start in zip(texts, starts, strict=True):
        if not isinstance(text, str) or type(start) is not int or start < 0:
            return (
                f"answers need text and a whole answer_start >= 0, got {_short(text)} at {start!r}"
            )
        if isinstance(context, str) and context[start : start + len(text)] != text:
            found = context.find(text)
            hint = (
                f"it occurs at {found}" if found >= 0 else "it does not occur in the context at all"
            )
            where = f"answer {_short(text)} is not at answer_start {start} of the context ({hint})"
            return where + "; answer_start counts characters from 0"
    return None


CHECKS: dict[str, Callable[[object, dict, list[str] | None], str | None]] = {
    "str": _check_str,
    "label": _check_label,
    "number": _check_number,
    "messages": _check_messages,
    "answers": _check_answers,
}


def check_schema(records: list[dict], schema: Schema) -> list[Problem]:
    """Missing, empty or mistyped fields and unknown labels, one Problem per record and field."""
    labels = [str(x) for x in schema.labels] if schema.labels is not None else None
    per_file = Counter(r.get("_file", "<data>") for r in records)
    problems: list[Problem] = []
    for spec in schema.fields:
        check = CHECKS[spec.kind]
        missing: dict[str, list[dict]] = {}
        for i, r in enumerate(records):
            value = r.get(spec.name)
            if value is None:
                if spec.required:
                    missing.setdefault(_where(r, i)[0], []).append(r)
            elif (message := check(value, r, labels)) is not None:
                problems.append(Problem("error", *_where(r, i), spec.name, message))
        problems += _missing_problems(spec.name, missing, per_file)
        if spec.kind == "label":
            problems += _label_forms(records, spec.name)
    return sorted(problems, key=lambda p: (p.file, p.line or 0))


# the fields that give a task's data away, most telling first: (task, fields every record of it has)
_FORMATS = (("chat", ("messages",)), ("qa", ("question", "context")), ("classification", ("text", "label")),
            ("lm", ("text",)))


def guess_task(columns: set[str]) -> str | None:
    """The task whose data format these columns look like (chat: messages; qa: question + context; ...)."""
    return next((task for task, need in _FORMATS if set(need) <= columns), None)


def _missing_problems(
    name: str, missing: dict[str, list[dict]], per_file: Counter
) -> list[Problem]:
    """One Problem per file when the field is absent from all its records, else one per record."""
    problems = []
    for file, recs in missing.items():
        if len(recs) == per_file[file] and len(recs) > 1:
            columns = [k for k in recs[0] if k not in META]
            msg = f"missing from all {len(recs)} records; the columns are: {', '.join(columns) or 'none'}. "
            looks = guess_task(set(columns))
            if looks is not None and name not in columns:
                msg += (f"The records look like {looks} data: set task: {looks} in the config "
                        f"(tailor data check: --task {looks}); or rename a column, ")
            else:
                msg += "Rename one, "
            msg += f"or map it with data.fields (e.g. {name}: <your column>)"
            problems.append(Problem("error", file, None, name, msg, kind="missing field"))
        else:
            msg = f"missing; every record needs '{name}'"
            problems += [Problem("error", *_where(r), name, msg) for r in recs]
    return problems


def _is_whole_number(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _label_forms(records: list[dict], name: str) -> list[Problem]:
    """Labels may be numbers or names, but not both: 1 and 'positive' would be two different labels."""
    number = word = None
    for r in records:
        v = r.get(name)
        if number is None and isinstance(v, int) and not isinstance(v, bool):
            number = r
        elif word is None and isinstance(v, str) and v.strip() and not _is_whole_number(v):
            word = r
    if number is None or word is None:
        return []
    later = max(number, word, key=lambda r: (r.get("_file", ""), r.get("_line", 0)))
    msg = f"labels mix numbers ({number[name]!r} at line {number.get('_line')}) and names "
    msg += f"({word[name]!r} at line {word.get('_line')}); they would be different labels: use one form"
    return [Problem("error", *_where(later), name, msg)]


_UNSEEN = "the model cannot learn it; add training examples or remove those records"
_RARE = "the model will hardly learn it and its scores will be noise; add examples"


def check_label_coverage(splits: dict[str, list[dict]], label_field: str) -> list[Problem]:
    """Labels in validation/test that train never shows (error); labels with under 2 train examples (warning)."""
    train_records = splits.get("train", [])
    train = Counter(str(r[label_field]) for r in train_records if r.get(label_field) is not None)
    problems = []
    for split, recs in splits.items():
        if split == "train":
            continue
        unseen: dict[str, list[dict]] = {}
        for r in recs:
            if r.get(label_field) is not None and str(r[label_field]) not in train:
                unseen.setdefault(str(r[label_field]), []).append(r)
        for label in sorted(unseen):
            rs = unseen[label]
            msg = (
                f"label {label!r} is in {split} ({len(rs)} record(s)) but never in train: {_UNSEEN}"
            )
            problems.append(Problem("error", *_where(rs[0]), label_field, msg))
    for label, n in sorted(train.items()):
        if n < 2:
            first = next(r for r in train_records if str(r.get(label_field)) == label)
            msg = f"label {label!r} has only {n} training example; {_RARE}"
            problems.append(Problem("warning", *_where(first), label_field, msg, kind="rare label"))
    return problems


_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """The text as near-duplicate detection sees it: casefolded, no punctuation, single spaces."""
    text = text.casefold().translate(_ASCII_PUNCTUATION)
    if not text.isascii():
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(text.split())


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def key_text(key: Callable[[dict], str], record: dict) -> str:
    """The text a record is compared by; records the key cannot read (schema errors) compare as ''."""
    try:
        value = key(record)
    except (KeyError, TypeError, IndexError):
        return ""
    return value if isinstance(value, str) else "" if value is None else str(value)


def find_duplicates(splits: dict[str, list[dict]], key: Callable[[dict], str], leakage: str = "error") -> list[Problem]:
    """Exact and near-exact duplicates within a split (warning) and across splits (train leak: an error, or a
    warning with data.leakage keep).

    One pass, a 64-bit hash per distinct normalized text; the first occurrence is the one pointed to.
    """
    # train first: later splits are compared with it
    order = sorted(splits, key=lambda s: s != "train")
    # split -> 64-bit digest of a normalized key -> index of the first record with it
    seen: dict[str, dict[int, int]] = {}
    problems = []
    for n, split in enumerate(order):
        seen[split] = {}
        for i, r in enumerate(splits[split]):
            raw = key_text(key, r)
            norm = normalize_text(raw)
            if not norm:
                continue
            h = _digest(norm)
            for other in (*order[:n], split):
                j = seen[other].get(h)
                if j is not None and normalize_text(key_text(key, splits[other][j])) == norm:
                    exact = key_text(key, splits[other][j]) == raw
                    problems.append(_duplicate(split, r, i, other, splits[other][j], j, exact, leakage))
                    break
            else:
                seen[split][h] = i
    return problems


_NEAR = "same text ignoring case, punctuation and spacing"
_LEAK = "the model would be scored on an example it trained on"
LEAKAGE_FIX = "remove one, or set data.leakage: drop (train without the copy) or keep (train on it anyway)"


def _duplicate(split: str, r: dict, i: int, other: str, o: dict, j: int, exact: bool, leakage: str) -> Problem:
    file, line = _where(r, i)
    other_file, other_line = _where(o, j)
    where = f"{other} line {other_line}" + (f" of {other_file}" if other_file != file else "")
    what = "duplicates" if exact else f"is a near-duplicate ({_NEAR}) of"
    severity: Literal["error", "warning"]
    if other == "train" and split != "train":
        kind = "leakage"
        if leakage == "keep":
            why, severity = f"leakage kept as data.leakage says: {_LEAK}", "warning"
        else:
            why, severity = f"leakage: {_LEAK}; {LEAKAGE_FIX}", "error"
    elif other != split:
        why, severity, kind = "the same example is scored twice; remove one", "warning", "duplicate across evaluation splits"
    else:
        why, severity = "it counts twice; remove one unless that is intended", "warning"
        kind = f"duplicate within {split}"
    return Problem(severity, file, line, None, f"{split} line {line} {what} {where} ({why})", kind=kind)


def _nearest_rank(sorted_values: np.ndarray, q: float) -> int:
    """The smallest observed value with at least q% of values at or below it."""
    k = max(math.ceil(q / 100 * len(sorted_values)) - 1, 0)
    return int(sorted_values[k])


def token_statistics(
    lengths: dict[str, Sequence[int]], max_length: int, epochs: float = 1.0
) -> dict:
    """Per split: count, mean, p50, p95, max, total and truncation; and the tokens training will see.

    Percentiles are nearest-rank (an observed length); `kept` counts tokens after truncation to max_length;
    tokens_lost_mean is the mean over truncated examples only.
    """
    per_split: dict[str, dict[str, float]] = {}
    for split, values in lengths.items():
        a = np.sort(np.asarray(values, dtype=np.int64))
        if a.size == 0:
            per_split[split] = {"count": 0}
            continue
        lost = np.clip(a - max_length, 0, None)
        n_truncated = int((lost > 0).sum())
        per_split[split] = {
            "count": int(a.size),
            "mean": round(float(a.mean()), 2),
            "p50": _nearest_rank(a, 50),
            "p95": _nearest_rank(a, 95),
            "max": int(a[-1]),
            "total": int(a.sum()),
            "kept": int(np.minimum(a, max_length).sum()),
            "n_truncated": n_truncated,
            "truncated_fraction": round(n_truncated / a.size, 4),
            "tokens_lost_mean": round(float(lost[lost > 0].mean()), 2) if n_truncated else 0.0,
            "tokens_lost_max": int(lost.max()),
        }
    train_kept = per_split.get("train", {}).get("kept", 0)
    return {
        "max_length": max_length,
        "epochs": epochs,
        "splits": per_split,
        "train_tokens_total": int(round(train_kept * epochs)),
    }
