"""Read, check, split and encode a run's data: everything before the model is loaded."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tailor.config import ConfigError, DataConfig, RunConfig
from tailor.data.batching import Encoded
from tailor.data.check import (
    check_label_coverage,
    check_schema,
    find_duplicates,
    key_text,
    normalize_text,
    token_statistics,
)
from tailor.data.readers import CONFIG, DataError, Problem, apply_field_map, read_records
from tailor.data.split import record_id, split_records
from tailor.data.summary import DataReport
from tailor.tasks.base import Task, encode_split, split_units

SPLITS = ("train", "validation", "test")


@dataclass
class Prepared:
    records: dict[str, list[dict]]
    encoded: dict[str, Encoded]
    report: DataReport
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    parts: dict[str, Prepared] = field(default_factory=dict)  # multitask: each sub-task's own data, by name

    def split_ids(self) -> dict[str, list[str]]:
        if self.parts:
            return {f"{name}/{split}": ids for name, part in self.parts.items() for split, ids in part.split_ids().items()}
        return {name: [record_id(r) for r in recs] for name, recs in self.records.items()}


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(paths: list[str], data: DataConfig, problems: list[Problem], files: dict[str, str]) -> list[dict]:
    records: list[dict] = []
    for p in paths:
        recs, probs = read_records(p)
        problems += probs
        path = Path(p)
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                files[str(f)] = file_hash(f)
        if data.fields:
            recs, probs = apply_field_map(recs, data.fields)
            problems += probs
        records += recs
    return records


def _blocking(problems: list[Problem]) -> bool:
    """Errors that make further checks pointless (a missing file, an unmapped column); an unreadable line is not one."""
    return any(p.severity == "error" and (p.line is None or p.field is not None) for p in problems)


def drop_leaks(parts: dict[str, list[dict]], key: Callable[[dict], str], names: list[str]) -> list[Problem]:
    """After tailor's own split: remove evaluation records that duplicate a training record (a warning each).

    Records whose key cannot be read (a missing field) are never taken for copies of each other: the schema
    checks report them wherever the split put them.
    """
    seen: dict[str, dict] = {}
    for r in parts["train"]:
        norm = normalize_text(key_text(key, r))
        if norm:
            seen.setdefault(norm, r)
    problems = []
    for name in names:
        kept = []
        for r in parts[name]:
            twin = seen.get(normalize_text(key_text(key, r)) or "\0none")
            if twin is None:
                kept.append(r)
                continue
            problems.append(Problem("warning", r.get("_file", "?"), r.get("_line"), None,
                                    f"left out of {name}: duplicates train line {twin.get('_line')} "
                                    "(tailor made this split, so it keeps the copy in train to avoid leakage)",
                                    kind=f"copy of a train record left out of {name}"))
        parts[name] = kept
    return problems


def drop_train_copies(splits: dict[str, list[dict]], key: Callable[[dict], str]) -> list[Problem]:
    """data.leakage: drop - remove training records that duplicate a validation or test record (a warning each);
    the evaluation files stay as they are."""
    evaluated: dict[str, tuple[str, dict]] = {}
    for name in ("validation", "test"):
        for r in splits.get(name, []):
            norm = normalize_text(key_text(key, r))
            if norm:
                evaluated.setdefault(norm, (name, r))
    kept, problems = [], []
    for r in splits["train"]:
        twin = evaluated.get(normalize_text(key_text(key, r)) or "\0none")
        if twin is None:
            kept.append(r)
            continue
        name, o = twin
        problems.append(Problem("warning", r.get("_file", "?"), r.get("_line"), None,
                                f"left out of train: the same example is {name} line {o.get('_line')} of "
                                f"{o.get('_file', '?')} (data.leakage: drop)", kind="leakage dropped from train"))
    splits["train"] = kept
    return problems


def read_splits(data: DataConfig, seed: int, stratify: str | None,
                key: Callable[[dict], str] = lambda r: str(r.get("text", "")),
                units: Callable[[list[dict]], list[dict]] | None = None) -> tuple[dict[str, list[dict]], list[Problem], dict[str, str]]:
    """Records per split: the given files, or a seeded split of the training file(s).

    `units` turns the training records into the units tailor's own split deals out (language modelling:
    long documents cut into pieces of tokens, so that one long text can still be split).
    """
    problems: list[Problem] = []
    files: dict[str, str] = {}
    if not data.train:
        raise DataError([Problem("error", "<config>", None, "data.train", "no training data: set data.train to a file or folder")])
    splits = {name: _read(getattr(data, name), data, problems, files) for name in SPLITS}
    if data.limit:
        splits["train"] = splits["train"][: data.limit]
    missing = [s for s in ("validation", "test") if not getattr(data, s)]
    if missing and not _blocking(problems):
        sizes = {s: (getattr(data.split, s) if s in missing else 0) for s in ("validation", "test")}
        sizes = {k: int(v) if v >= 1 else v for k, v in sizes.items()}
        records = units(splits["train"]) if units is not None and not any(p.severity == "error" for p in problems) \
            else splits["train"]
        try:
            parts = split_records(records, sizes["validation"], sizes["test"], seed, stratify=stratify)
        except DataError as e:
            return splits, problems + e.problems, files
        problems += drop_leaks(parts, key, missing)
        splits["train"] = parts["train"]
        for s in missing:
            splits[s] = parts[s]
    return splits, problems, files


def prepare(cfg: RunConfig, data: DataConfig, task: Task, tok: Any, max_length: int) -> Prepared:
    """Read, split, check and encode; raise DataError (every problem, with lines) on errors."""
    if task.type == "multitask":
        return prepare_multitask(cfg, task, tok, max_length)
    schema = task.schema()
    label_field = next((f.name for f in schema.fields if f.kind == "label"), None)
    key = getattr(task, "dedup_key", None) or (lambda r: str(r.get("text", "")))
    splits, problems, files = read_splits(data, cfg.seed, label_field, key,
                                          units=lambda recs: split_units(task, recs, tok, max_length))
    leakage: dict = {}
    if not _blocking(problems):
        dropped = drop_train_copies(splits, key) if data.leakage == "drop" else []
        for recs in splits.values():
            problems += check_schema(recs, schema)
        if label_field:
            problems += check_label_coverage(splits, label_field)
        found = find_duplicates(splits, key, data.leakage)
        problems += dropped + found
        kept = sum(p.kind == "leakage" for p in found)
        if dropped or kept:
            leakage = {"setting": data.leakage, "dropped_from_train": len(dropped), "kept": kept}
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataError(problems)
    task.fit_labels(splits["train"])
    encoded = {name: encode_split(task, recs, tok, max_length) for name, recs in splits.items()}
    problems += getattr(task, "encode_problems", lambda: [])()
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataError(problems)
    lengths = {name: enc.fields.get("full_length", enc.lengths) for name, enc in encoded.items()}
    stats = token_statistics(lengths, max_length, epochs=cfg.train.epochs)
    report = DataReport(problems=problems, stats=stats, splits={k: len(v) for k, v in splits.items()}, leakage=leakage)
    return Prepared(records=splits, encoded=encoded, report=report, files=files)


def _sub_key(key: str, i: int) -> str:
    """A sub-task's setting as the config names it: task.label_words -> task.tasks.0.label_words."""
    return f"task.tasks.{i}.{key.removeprefix('task.')}"


def _tagged(p: Problem, name: str, i: int) -> Problem:
    """A sub-task's problem, saying which sub-task: settings under task.tasks.N, data files as 'task NAME: file'."""
    if p.file == CONFIG:
        return replace(p, field=_sub_key(p.field, i) if p.field else f"task.tasks.{i}")
    return replace(p, file=f"task {name}: {p.file}")


def prepare_multitask(cfg: RunConfig, task: Any, tok: Any, max_length: int) -> Prepared:
    """Every sub-task's data read, checked, split and encoded as a single task's would be, then merged.

    Problems of all sub-tasks are collected before raising; each names its sub-task. The sub-tasks'
    own splits stay in `parts` as views of the merged arrays, so memory does not double.
    """
    parts: dict[str, Prepared] = {}
    problems: list[Problem] = []
    for i, (name, sub) in enumerate(task.tasks.items()):
        data = task.configs[name].data
        task.max_lengths[name] = data.max_length or max_length
        try:
            parts[name] = prepare(cfg, data, sub, tok, task.max_lengths[name])
            problems += [_tagged(p, name, i) for p in parts[name].report.problems]
        except DataError as e:
            problems += [_tagged(p, name, i) for p in e.problems]
        except ConfigError as e:  # a sub-task's settings (label words, prompt...) do not fit its data
            raise ConfigError(e.source, [_sub_key(p, i) for p in e.problems]) from None
    if any(p.severity == "error" for p in problems):
        raise DataError(problems)
    encoded = {split: task.merge({name: part.encoded[split] for name, part in parts.items()}) for split in SPLITS}
    for name, part in parts.items():
        part.encoded = {split: task.part(encoded[split], name) for split in SPLITS}
    report = DataReport(problems=problems, stats={"max_length": max_length, "tasks": {n: p.report.stats for n, p in parts.items()}},
                        splits={f"{n}/{s}": c for n, p in parts.items() for s, c in p.report.splits.items()})
    files = {f: h for part in parts.values() for f, h in part.files.items()}
    return Prepared(records={}, encoded=encoded, report=report, files=files, parts=parts)


def check_file(file: Path, task_type: str, config: Path | None, overrides: list[str],
               keep: dict | None = None) -> DataReport:
    """`tailor data check`: the run's data checks on one file (split as a run would split it).

    With `keep` (a dict), it also receives cfg, task, tok and, when the data is usable, prepared.
    """
    from tailor.config import load_config
    from tailor.models.load import load_tokenizer_for
    from tailor.tasks import build_task

    over = [f"data.train={file}", *overrides]
    if config is None:
        over.append(f"task.type={task_type}")
    cfg = load_config(config, over)
    tok, _ = load_tokenizer_for(cfg.model)
    task = build_task(cfg.task, cfg)
    max_length = cfg.data.max_length or min(getattr(tok, "model_max_length", 1024) or 1024, 2048)
    if keep is not None:
        keep.update(cfg=cfg, task=task, tok=tok)
    try:
        prepared = prepare(cfg, cfg.data, task, tok, max_length)
        if keep is not None:
            keep["prepared"] = prepared
        return prepared.report
    except DataError as e:
        return DataReport(problems=e.problems, stats={}, splits={})
