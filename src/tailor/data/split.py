"""Seeded, optionally stratified train / validation / test splits, and the record ids that save them."""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from tailor.data.readers import CONFIG, META, DataError, Problem

SPLITS = ("train", "validation", "test")


def _config_error(key: str, message: str) -> DataError:
    return DataError([Problem("error", CONFIG, None, key, message)])


def _size(value: float | int, n: int, key: str) -> int:
    """A fraction (0 < f < 1) or a count of records -> a count; 0 means no such split."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise _config_error(
            key, f"{value!r} is not a fraction between 0 and 1 (e.g. 0.1) or a count of records"
        )
    if value == 0:
        return 0
    if value < 1:
        return (
            max(1, int(value * n + 0.5)) if n else 0
        )  # a split that was asked for gets at least one record
    if value != int(value):
        raise _config_error(
            key, f"{value} is neither a fraction below 1 (e.g. 0.1) nor a whole count (e.g. 100)"
        )
    return int(value)


def _apportion(
    total: int, counts: dict[str, int], lo: dict[str, int], hi: dict[str, int]
) -> dict[str, int]:
    """Whole numbers near total * count / sum(counts) per key, within [lo, hi], summing to total if they can.

    Largest remainder first; ties go to the smaller key, so the result is deterministic.
    """
    n = sum(counts.values())
    quota = {k: total * c / n for k, c in counts.items()}
    alloc = {k: min(max(int(quota[k]), lo[k]), hi[k]) for k in counts}
    diff = total - sum(alloc.values())
    step = 1 if diff > 0 else -1
    room = (lambda k: alloc[k] < hi[k]) if diff > 0 else (lambda k: alloc[k] > lo[k])
    heap = [(-step * (quota[k] - alloc[k]), k) for k in counts if room(k)]
    heapq.heapify(heap)
    while diff and heap:
        _, k = heapq.heappop(heap)
        alloc[k] += step
        diff -= step
        if room(k):
            heapq.heappush(heap, (-step * (quota[k] - alloc[k]), k))
    return alloc


def _allocate(
    total: int, counts: dict[str, int], soft: dict[str, int], hard: dict[str, int]
) -> dict[str, int]:
    """Per-label share of one split: each label with >= 3 examples gets one if the split is big enough;
    stay under `soft` (which keeps examples for the other splits) unless the total cannot be reached."""
    lo = {k: 1 if c >= 3 and soft[k] >= 1 else 0 for k, c in counts.items()}
    if sum(lo.values()) > total:
        lo = dict.fromkeys(counts, 0)
    alloc = _apportion(total, counts, lo, soft)
    if sum(alloc.values()) < total:
        alloc = _apportion(total, counts, alloc, hard)
    return alloc


def _stratified(records: list[dict], field: str, n_val: int, n_test: int, rng: random.Random):
    """Indices for validation and test, each label keeping its share in every split."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        value = r.get(field)
        groups.setdefault("\0missing" if value is None else str(value), []).append(i)
    counts = {k: len(v) for k, v in groups.items()}
    keep_test = {k: 1 if c >= 3 and n_test else 0 for k, c in counts.items()}
    val = _allocate(
        n_val, counts, {k: max(c - 1 - keep_test[k], 0) for k, c in counts.items()}, counts
    )
    test = _allocate(
        n_test,
        counts,
        {k: max(c - 1 - val[k], 0) for k, c in counts.items()},
        {k: c - val[k] for k, c in counts.items()},
    )
    val_idx, test_idx = [], []
    for label in sorted(groups):
        idx = groups[label]
        rng.shuffle(idx)
        val_idx += idx[: val[label]]
        test_idx += idx[val[label] : val[label] + test[label]]
    return val_idx, test_idx


def split_records(
    records: list[dict],
    validation: float | int,
    test: float | int,
    seed: int,
    stratify: str | None = None,
) -> dict[str, list[dict]]:
    """Split records into train / validation / test: sizes as fractions (0 < f < 1) or counts; seeded.

    With `stratify`, every value of that field keeps its proportion in each split. Each split keeps the
    records' original order; every record lands in exactly one split.
    """
    n = len(records)
    n_val = _size(validation, n, "data.split.validation")
    n_test = _size(test, n, "data.split.test")
    if n_val + n_test and n_val + n_test >= n:
        key = (
            "data.split.test"
            if not n_val
            else "data.split.validation"
            if not n_test
            else "data.split"
        )
        raise _config_error(
            key,
            f"validation={validation!r} and test={test!r} ask for {n_val} + {n_test} records "
            f"but there are {n}, and training needs at least one; make them smaller (0 for "
            "none) or give data.validation / data.test files",
        )
    rng = random.Random(seed)
    if stratify is None:
        order = list(range(n))
        rng.shuffle(order)
        val_idx, test_idx = order[:n_val], order[n_val : n_val + n_test]
    else:
        val_idx, test_idx = _stratified(records, stratify, n_val, n_test, rng)
    place = [0] * n  # 0 train, 1 validation, 2 test
    for i in val_idx:
        place[i] = 1
    for i in test_idx:
        place[i] = 2
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for r, p in zip(records, place, strict=True):
        splits[SPLITS[p]].append(r)
    return splits


def record_id(record: dict) -> str:
    """A stable id for a record's content (sha1 of its canonical JSON, without _line and _file)."""
    content = {k: v for k, v in record.items() if k not in META}
    text = json.dumps(
        content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def save_split(splits: Mapping[str, Sequence[dict] | Sequence[str]], path: str | Path) -> None:
    """Write the record ids of each split as JSON (records are turned into ids); atomic."""
    ids = {
        name: [x if isinstance(x, str) else record_id(x) for x in items]
        for name, items in splits.items()
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(ids, indent=0) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_split(path: str | Path) -> dict[str, list[str]]:
    """The record ids per split written by save_split."""
    name = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            [Problem("error", name, None, None, "split file not found; check the path")]
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        line = getattr(e, "lineno", None)
        raise DataError(
            [Problem("error", name, line, None, f"not a split file written by tailor ({e})")]
        ) from None
    ok = isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data.values()
    )
    if not ok:
        raise DataError(
            [
                Problem(
                    "error",
                    name,
                    None,
                    None,
                    'expected {"train": [ids...], "validation": [...], "test": [...]}',
                )
            ]
        )
    return data
