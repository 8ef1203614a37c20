"""Baseline vs fine-tuned (or one run vs another) on the same split: metrics side by side, changed examples.

A run's test predictions are in predictions.jsonl, one line per example:
{"row", "id", "text", "reference", "baseline", "fine_tuned"}. Classification values are label names;
regression values are numbers ("fixed" there means the absolute error fell, "broken" that it rose).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tailor.data.split import load_split, record_id
from tailor.evaluate.confusion import classification_sections
from tailor.rundir import read_jsonl, unfinished
from tailor.tasks.base import LOWER_IS_BETTER

PREDICTIONS = "predictions.jsonl"


class CompareError(Exception):
    """The runs cannot be compared; the message says why and what to do."""


def prediction_rows(task: Any, records: list[dict], index: Any, base: dict | None, tuned: dict) -> list[dict]:
    """One row per example, in split order; predictions as readable values (label names, numbers)."""
    if len(tuned.get("rows", [])) != len(tuned.get("predictions", [])):
        return []  # the task predicts per batch (language modelling), not per example
    readable = getattr(task, "readable", lambda p: p)
    text_of = getattr(task, "dedup_key", lambda r: str(r.get("text", "")))
    per_example = base and len(base.get("rows", [])) == len(base.get("predictions", []))
    before = dict(zip(base["rows"], base["predictions"], strict=True)) if base and per_example else {}
    out = []
    for row, pred, ref in sorted(zip(tuned["rows"], tuned["predictions"], tuned["references"], strict=True)):
        record = records[int(index[row]) if index is not None else row]
        out.append({"row": row, "id": record_id(record), "line": record.get("_line"), "text": text_of(record),
                    "reference": readable(ref), "baseline": readable(before[row]) if row in before else None,
                    "fine_tuned": readable(pred)})
    return out


def write_predictions(path: Path, rows: list[dict], replace: bool = True) -> None:
    """predictions JSONL; with replace=False an existing file is never overwritten (FileExistsError)."""
    with path.open("w" if replace else "x") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")


@dataclass
class Comparison:
    names: tuple[str, str]  # column titles, e.g. ("pre-trained", "fine-tuned")
    split: str
    metrics: list[tuple[str, float | None, float | None]]
    fixed: list[dict] = field(default_factory=list)  # {"text", "reference", "a", "b"}
    broken: list[dict] = field(default_factory=list)
    n_fixed: int = 0
    n_broken: int = 0
    n_other: int = 0  # changed, but neither fixed nor broken (a different wrong label)
    n_compared: int = 0
    note: str | None = None

    @property
    def title(self) -> str:
        return f"{self.names[0]} vs {self.names[1]}"


def _metrics_of(run: Path) -> dict:
    path = run / "metrics.json"
    if not path.is_file():
        raise CompareError(unfinished(run))
    return json.loads(path.read_text())


def _split_of(metrics: dict) -> str:
    tuned = metrics.get("fine_tuned", {})
    return "test" if tuned.get("test") else "validation"


def _scalars(a: dict, b: dict) -> list[tuple[str, float | None, float | None]]:
    names = [k for k, v in b.items() if isinstance(v, int | float) and k != "tokens"]
    return [(k, a.get(k) if isinstance(a.get(k), int | float) else None, b[k]) for k in names]


def _changes(pairs: list[tuple[dict, Any, Any]], cmp: Comparison, limit: int) -> None:
    """Sort each example into fixed / broken / other from its two predictions and the reference."""
    numeric = any(isinstance(r["reference"], float) for r, _, _ in pairs)
    fixed: list[tuple[float, dict]] = []
    broken: list[tuple[float, dict]] = []
    for r, a, b in pairs:
        if a is None or b is None or a == b:
            continue
        item = {"text": r["text"], "reference": r["reference"], "a": a, "b": b, "line": r.get("line")}
        if numeric:
            gain = abs(a - r["reference"]) - abs(b - r["reference"])
            (fixed if gain > 0 else broken).append((abs(gain), item))
        elif b == r["reference"]:
            fixed.append((0, item))
        elif a == r["reference"]:
            broken.append((0, item))
        else:
            cmp.n_other += 1
    fixed.sort(key=lambda x: -x[0])
    broken.sort(key=lambda x: -x[0])
    cmp.n_fixed, cmp.n_broken, cmp.n_compared = len(fixed), len(broken), len(pairs)
    cmp.fixed, cmp.broken = [x for _, x in fixed[:limit]], [x for _, x in broken[:limit]]


def compare_runs(run: Path, other: Path | None = None, limit: int = 10) -> Comparison:
    """Baseline vs fine-tuned of `run`, or fine-tuned `run` vs fine-tuned `other` on the same split."""
    metrics = _metrics_of(run)
    split = _split_of(metrics)
    rows = read_jsonl(run / PREDICTIONS)
    if other is None:
        if not metrics.get("baseline"):
            raise CompareError(f"{run} has no baseline scores (eval.baseline was false); compare it with another run")
        cmp = Comparison(("pre-trained", "fine-tuned"), split,
                         _scalars(metrics["baseline"].get(split, {}), metrics["fine_tuned"].get(split, {})))
        pairs = [(r, r.get("baseline"), r.get("fine_tuned")) for r in rows]
    else:
        theirs = _metrics_of(other)
        _same_task(run, metrics, other, theirs)
        cmp = Comparison((run.name, other.name), split,
                         _scalars(metrics["fine_tuned"].get(split, {}), theirs["fine_tuned"].get(split, {})))
        cmp.note = _split_note(run, other, split)
        by_id = {r["id"]: r for r in read_jsonl(other / PREDICTIONS)}
        pairs = [(r, r.get("fine_tuned"), by_id[r["id"]].get("fine_tuned")) for r in rows if r["id"] in by_id]
    if not rows:
        cmp.note = (cmp.note + "; " if cmp.note else "") + f"no per-example predictions in {run / PREDICTIONS}"
    _changes(pairs, cmp, limit)
    return cmp


def _same_task(run: Path, mine: dict, other: Path, theirs: dict) -> None:
    """Two runs compare only on the same task, scored with the same metrics; else CompareError."""
    a, b = mine.get("task"), theirs.get("task")
    names = set(mine.get("fine_tuned", {}).get(_split_of(mine), {})) & set(theirs.get("fine_tuned", {}).get(_split_of(theirs), {}))
    if a != b or not names:
        raise CompareError(f"cannot compare {run} ({a}) with {other} ({b}): "
                           + ("they are different tasks, scored with different metrics" if a != b else "they share no metric")
                           + "; compare runs of the same task (or each run with its own baseline: tailor compare RUN)")


def to_json(cmp: Comparison) -> dict:
    """The comparison for scripts: stable keys, metric rows as objects."""
    a, b = cmp.names
    return {"a": a, "b": b, "split": cmp.split, "note": cmp.note,
            "metrics": [{"metric": k, "a": x, "b": y, "change": None if x is None or y is None else y - x}
                        for k, x, y in cmp.metrics],
            "examples": cmp.n_compared, "fixed": cmp.n_fixed, "broken": cmp.n_broken, "other_changes": cmp.n_other,
            "fixed_examples": cmp.fixed, "broken_examples": cmp.broken}


def _split_note(run: Path, other: Path, split: str) -> str | None:
    """None when both runs scored the same examples; else what differs (metrics are then not comparable)."""
    try:
        mine, theirs = load_split(run / "split.json").get(split, []), load_split(other / "split.json").get(split, [])
    except Exception:  # noqa: BLE001 - an old or missing split file: say so rather than fail
        return "could not read both split.json files; the runs may not share a test split"
    if mine == theirs:
        return None
    shared = len(set(mine) & set(theirs))
    return (f"the runs were scored on different {split} splits ({len(mine)} and {len(theirs)} examples, {shared} "
            "shared): metric differences mix model and data; changed predictions cover the shared examples only")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _delta(name: str, a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    d = b - a
    good = d < 0 if name in LOWER_IS_BETTER else d > 0
    return f"{d:+.4f}" + (" ✓" if good and d else "")


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _cell(text: str) -> str:
    return _short(text).replace("|", "\\|")


def to_markdown(cmp: Comparison, with_metrics: bool = True) -> str:
    """The comparison as a report.md section: metrics table (optional), then fixed and broken examples."""
    a, b = cmp.names
    lines = [f"## Changed predictions: {cmp.title} ({cmp.split})", ""]
    if cmp.note:
        lines += [f"> {cmp.note}", ""]
    if with_metrics:
        lines += [f"| metric | {a} | {b} | change |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {_fmt(x)} | {_fmt(y)} | {_delta(k, x, y)} |" for k, x, y in cmp.metrics] + [""]
    lines += [f"Of {cmp.n_compared} examples, {cmp.n_fixed} were fixed, {cmp.n_broken} broken"
              + (f" and {cmp.n_other} changed from one wrong label to another" if cmp.n_other else "") + "."]
    for title, items in (("Fixed", cmp.fixed), ("Broken", cmp.broken)):
        if items:
            lines += ["", f"{title} ({len(items)} shown):", "", f"| text | reference | {a} | {b} |", "|---|---|---|---|"]
            lines += [f"| {_cell(i['text'])} | {_fmt(i['reference'])} | {_fmt(i['a'])} | {_fmt(i['b'])} |" for i in items]
    return "\n".join(lines)


def render(cmp: Comparison, console: Console) -> None:
    """The comparison in the terminal: metrics with deltas, then the fixed and broken examples."""
    a, b = cmp.names
    if cmp.note:
        console.print(f"[yellow]note:[/] {cmp.note}", highlight=False)
    table = Table(title=f"{cmp.title} ({cmp.split})")
    for col in ("metric", a, b, "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for k, x, y in cmp.metrics:
        table.add_row(k, _fmt(x), _fmt(y), _delta(k, x, y))
    console.print(table)
    console.print(f"{cmp.n_fixed} fixed, {cmp.n_broken} broken, {cmp.n_other} changed between wrong labels "
                  f"(of {cmp.n_compared} examples)", highlight=False)
    for title, items in (("fixed", cmp.fixed), ("broken", cmp.broken)):
        if items:
            t = Table(title=f"{title} ({len(items)} shown)")
            for col in ("text", "reference", a, b):
                t.add_column(col, overflow="fold")
            for i in items:
                t.add_row(_short(i["text"], 70), _fmt(i["reference"]), _fmt(i["a"]), _fmt(i["b"]))
            console.print(t)


def render_metrics(metrics: dict, console: Console, title: str) -> None:
    """One model's metrics in the terminal: the numbers, then per-class scores where there are classes."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, int | float):
            table.add_row(k, _fmt(v))
    console.print(table)
    if metrics.get("per_class"):
        t = Table(title="per class")
        for col in ("label", "support", "precision", "recall", "f1"):
            t.add_column(col, justify="left" if col == "label" else "right")
        for name, s in metrics["per_class"].items():
            t.add_row(name, str(s["support"]), f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}")
        console.print(t)


def write_section(report: Path, markdown: str) -> None:
    """Put a section into report.md, replacing an earlier section with the same heading."""
    heading = markdown.splitlines()[0]
    text = report.read_text() if report.is_file() else ""
    lines = text.splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = markdown.splitlines() + [""]
        report.write_text("\n".join(lines) + "\n")
    else:
        report.write_text(text.rstrip("\n") + "\n\n" + markdown + "\n")


def report_sections(run: Path, task: Any, prep: Any, summary: dict, base: dict, tuned: dict) -> list[str]:
    """After training: write predictions.jsonl (test split, else validation); report.md sections to add."""
    if getattr(task, "type", None) == "multitask":
        task_predictions(run, task, prep, base, tuned)
        return [section for name, sub in task.tasks.items() if sub.info().get("labels")
                for section in classification_sections(run, summary, sub.info()["labels"], name)]
    split = "test" if tuned.get("test", {}).get("rows") else "validation"
    sections = []
    labels = task.info().get("labels")
    if labels:
        sections += classification_sections(run, summary, labels)
    if split not in tuned or split not in prep.records:
        return sections
    rows = prediction_rows(task, prep.records[split], prep.encoded[split].index, base.get(split), tuned[split])
    if rows:
        write_predictions(run / PREDICTIONS, rows)
        if base.get(split):
            sections.append(to_markdown(compare_runs(run), with_metrics=False))
    return sections


def task_predictions(run: Path, task: Any, prep: Any, base: dict, tuned: dict) -> None:
    """Multitask: predictions-NAME.jsonl for each sub-task that predicts per example (test split, else validation)."""
    for name, part in prep.parts.items():
        split = "test" if tuned.get("test", {}).get(name, {}).get("rows") else "validation"
        kept = tuned.get(split, {}).get(name)
        if kept and split in part.records:
            rows = prediction_rows(task.tasks[name], part.records[split], part.encoded[split].index,
                                   base.get(split, {}).get(name), kept)
            if rows:
                write_predictions(run / f"predictions-{name}.jsonl", rows)
