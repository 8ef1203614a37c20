"""Runs after the fact: resume an interrupted one, reproduce a finished one, list and show them (`tailor runs`)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from tailor import registry
from tailor.rundir import CONFIG, MARKS, hold_run, is_run_dir
from tailor.runrecord import ENV, RunError, config_hash, environment
from tailor.train.checkpoint import checkpoint_step

RTOL, ATOL = 1e-4, 1e-6  # "within tolerance" for reproduced metrics


def resolve_run(ref: str | Path, root: str | Path = "runs") -> Path:
    """A run directory from its path, or from its name in the registry of `root`; only a folder tailor made for a
    run counts (a project folder that merely holds a config.yaml is not one, and is never written to)."""
    path = Path(ref)
    if is_run_dir(path):
        return path
    if path.is_dir() and (path / CONFIG).is_file():
        raise RunError(f"{ref} is not a tailor run: it holds a {CONFIG} but none of the files a run writes "
                       f"({', '.join(MARKS)}); nothing was changed there. To train with that config: "
                       f"tailor train {path / CONFIG}")
    row = registry.find_run(Path(root), str(ref))
    if row is not None and is_run_dir(Path(row["path"])):
        return Path(row["path"])
    raise RunError(f"{ref}: not a run directory and no run of that name in "
                   f"{Path(root) / registry.FILE}; `tailor runs` lists the runs")


def resume_run(ref: str | Path, console: Console) -> Any:
    """Continue a run from its last complete checkpoint, with its own config and data; None if it had finished.

    The run is held (run.lock) before anything in it is read or written: a run another process is still
    training is refused untouched.
    """
    from tailor.api import train
    from tailor.config import load_config

    run = resolve_run(ref)
    with hold_run(run):
        if (run / "metrics.json").is_file():
            console.print(f"{run} has finished (metrics.json is written); nothing to resume", highlight=False)
            return None
        step = checkpoint_step(run / "checkpoints" / "last")
        console.print(f"resuming {run} " + (f"from step {step}" if step is not None else
                                            "from the start (it stopped before its first checkpoint)"), highlight=False)
        return train(load_config(run / CONFIG), console, resume=run)


def reproduce_run(ref: str | Path, console: Console) -> tuple[Any, list[dict]]:
    """Train again from a finished run's record into a new run; compare the final metrics, metric by metric."""
    from tailor.api import train
    from tailor.config import load_config

    run = resolve_run(ref)
    if not (run / "metrics.json").is_file():
        raise RunError(f"{run} has not finished (no metrics.json), so there is nothing to compare with; "
                       f"resume it with: tailor resume {run}")
    cfg = load_config(run / "config.yaml")
    check_inputs(run)
    for note in environment_changes(run, cfg):
        console.print(f"[yellow]note[/] {note}", highlight=False)
    new = train(cfg, console)
    original = json.loads((run / "metrics.json").read_text())
    rows = compare_metrics(original.get("fine_tuned", {}), new.metrics.get("fine_tuned", {}))
    from tailor.rundir import write_json

    write_json(new.path / "reproduce.json", {"of": str(run.resolve()), "metrics": rows})
    return new, rows


def compare_single(run: Path, console: Console) -> dict:
    """Train each sub-task of a finished multitask run alone, with the same settings, under RUN/single/;
    their metrics go into the run's metrics.json (single_task) and its report's tables."""
    from tailor.api import train
    from tailor.config import load_config
    from tailor.evaluate.compare import write_section
    from tailor.evaluate.report import comparison_table
    from tailor.rundir import write_json

    cfg = load_config(run / "config.yaml")
    if cfg.task.type != "multitask":
        raise RunError(f"--compare-single: {run} is not a multitask run (task.type {cfg.task.type})")
    results = {}
    for name in [sub.name for sub in cfg.task.tasks if sub.name]:
        single = cfg.single_task(name)
        single.output_dir, single.eval.baseline = str(run / "single"), False  # the multitask run scored the baseline
        console.print(f"single-task run: [bold]{name}[/]", highlight=False)
        alone = train(single, console)
        results[name] = {"run": str(alone.path), **alone.metrics["fine_tuned"]}
    summary = json.loads((run / "metrics.json").read_text()) | {"single_task": results}
    write_json(run / "metrics.json", summary)
    for split in ("test", "validation"):
        rows = comparison_table(summary, split)
        if rows:
            write_section(run / "report.md", "\n".join([f"## {split.capitalize()}: pre-trained vs fine-tuned", "", *rows]))
    return results


def check_inputs(run: Path) -> None:
    """The run's data files (data.json) and base model (env.json) are as they were; RunError naming what changed."""
    from tailor.data.prepare import file_hash
    from tailor.models.load import directory_hash

    files = json.loads((run / "data.json").read_text()).get("files", {})
    problems = [f"{f}: missing" if not Path(f).is_file() else f"{f}: contents changed (sha256 differs)"
                for f, h in files.items() if not Path(f).is_file() or file_hash(Path(f)) != h]
    env = json.loads((run / ENV).read_text()) if (run / ENV).is_file() else {}
    base = env.get("base_model") or {}
    if base.get("hash") and Path(base["path"]).is_dir() and directory_hash(base["path"]) != base["hash"]:
        problems.append(f"model {base['path']}: its files changed since the run")
    if problems:
        raise RunError(f"cannot reproduce {run}: the inputs changed\n" + "\n".join(f"  {p}" for p in problems))


def environment_changes(run: Path, cfg: Any) -> list[str]:
    """What differs from the recorded run: package versions, hardware, a hand-edited config."""
    if not (run / ENV).is_file():
        return [f"{run} has no {ENV} (made before tailor recorded it); versions cannot be compared"]
    env = json.loads((run / ENV).read_text())
    now = environment()
    notes = [f"{k}: {env[k]} then, {now[k]} now" for k in now if k in env and env[k] != now[k]]
    if env.get("config_hash") and env["config_hash"] != config_hash(cfg):
        notes.append("config.yaml was edited after the run (its hash differs from env.json)")
    return notes


def compare_metrics(before: dict, after: dict) -> list[dict]:
    """Per split and scalar metric: exact, within tolerance (rel 1e-4, abs 1e-6), or differs."""
    rows = []
    for split in sorted(set(before) | set(after)):
        a, b = before.get(split, {}), after.get(split, {})
        for name in sorted(set(a) | set(b)):
            x, y = a.get(name), b.get(name)
            if not all(isinstance(v, int | float) or v is None for v in (x, y)):
                continue
            verdict = ("exact" if x == y else "differs" if x is None or y is None else
                       "within tolerance" if math.isclose(x, y, rel_tol=RTOL, abs_tol=ATOL) else "differs")
            rows.append({"split": split, "metric": name, "original": x, "reproduced": y, "verdict": verdict})
    return rows


def render_comparison(rows: list[dict], console: Console) -> None:
    table = Table("split", "metric", "original", "reproduced", "verdict", title="reproduced vs original")
    for r in rows:
        style = {"exact": "green", "within tolerance": "yellow"}.get(r["verdict"], "red")
        table.add_row(r["split"], r["metric"], _num(r["original"]), _num(r["reproduced"]), f"[{style}]{r['verdict']}[/]")
    console.print(table)
    differ = [r for r in rows if r["verdict"] == "differs"]
    close = [r for r in rows if r["verdict"] == "within tolerance"]
    console.print(f"{len(differ)} of {len(rows)} metrics differ" if differ else
                  f"all {len(rows)} metrics match" + (f" ({len(close)} within tolerance)" if close else " exactly"))


# ------------------------------------------------------------------ tailor runs


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _duration(row: dict) -> str:
    """Wall time: to the end, or so far while running; unknown for a process that died."""
    end = row.get("ended") or (time.time() if row["status"] == "running" else None)
    if not row.get("started") or end is None:
        return "-"
    seconds = int(end - row["started"])
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def headline(metrics: dict | None) -> str:
    """The run's own metric on test (else validation), fine-tuned."""
    if not metrics or not metrics.get("fine_tuned"):
        return "-"
    tuned, name = metrics["fine_tuned"], metrics.get("metric") or "loss"
    split = "test" if tuned.get("test") else "validation"
    value = tuned.get(split, {}).get(name)
    return f"{name} {_num(value)} ({split})" if value is not None else "-"


_COLUMNS = ("name", "status", "task", "strategy", "base model", "started", "took", "result")


def _cells(r: dict) -> list[str]:
    return [r["name"], r["status"], r["task"] or "-", r["strategy"] or "-", r["base_model"] or "-", _when(r["started"]),
            _duration(r), headline(r["metrics"])]


def render_runs(rows: list[dict], console: Console) -> None:
    """The runs as a table; piped (not a terminal), as plain aligned columns that are never cut short."""
    if not rows:
        console.print("no runs recorded here yet")
        return
    if not console.is_terminal:
        lines = [list(_COLUMNS)] + [_cells(r) for r in rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]
        for line in lines:
            console.out("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), highlight=False)
        return
    table = Table(*_COLUMNS, title="runs")
    colour = {"running": "cyan", "finished": "green", "failed": "red", "interrupted": "yellow"}
    for r in rows:
        cells = _cells(r)
        cells[1] = f"[{colour.get(r['status'], 'white')}]{r['status']}[/]"
        table.add_row(*cells)
    console.print(table)


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)) if t else None


def run_record(row: dict) -> dict:
    """One run for scripts (`tailor runs --json`): the same keys for every run, None where unknown."""
    metrics = row.get("metrics") or {}
    tuned, name = metrics.get("fine_tuned") or {}, metrics.get("metric")
    split = "test" if tuned.get("test") else "validation" if tuned.get("validation") else None
    end = row.get("ended") or (time.time() if row["status"] == "running" else None)
    return {"name": row["name"], "path": row["path"], "status": row["status"], "task": row.get("task"),
            "strategy": row.get("strategy"), "base_model": row.get("base_model"), "started": _iso(row.get("started")),
            "ended": _iso(row.get("ended")), "seconds": round(end - row["started"], 1) if end and row.get("started") else None,
            "metric": name, "split": split, "value": tuned.get(split, {}).get(name) if split and name else None,
            "message": row.get("message"), "pid": row.get("pid"), "host": row.get("host"), "resumes": row.get("resumes") or 0}


def run_details(row: dict) -> dict:
    """`tailor runs show --json`: the run's record, its final metrics, lineage and how to resume it."""
    run = Path(row["path"])
    step = checkpoint_step(run / "checkpoints" / "last") if row["status"] in ("interrupted", "failed") else None
    resumable = row["status"] in ("interrupted", "failed") and (run / CONFIG).is_file()
    return {**run_record(row), "config": config_facts(run), "metrics": row.get("metrics"),
            "lineage": row.get("lineage") or [], "checkpoint_step": step,
            "resume": f"tailor resume {run}" if resumable else None}


def render_run(row: dict, console: Console) -> None:
    """One run: status, config summary, metrics, lineage, and how to resume it if it stopped."""
    run = Path(row["path"])
    console.print(f"[bold]{row['name']}[/]  {row['status']}  ({run})", highlight=False)
    if row.get("message"):
        console.print(f"  {row['message']}", highlight=False)
    console.print(f"  process {row['pid']} on {row['host']}, started {_when(row['started'])}, ended {_when(row['ended'])}"
                  + (f", resumed {row['resumes']}x" if row.get("resumes") else ""), highlight=False)
    for line in config_summary(run):
        console.print(f"  {line}", highlight=False)
    _render_metrics(row.get("metrics"), console)
    for i, step in enumerate(row.get("lineage") or []):
        console.print(f"  lineage {i + 1}: {step.get('run')} ({(step.get('task') or {}).get('type', '?')})", highlight=False)
    if row["status"] in ("interrupted", "failed") and (run / "config.yaml").is_file():
        step = checkpoint_step(run / "checkpoints" / "last")
        where = f"from its checkpoint at step {step}" if step is not None else "from the start (no checkpoint)"
        fix = " once the cause is fixed (same config; a changed setting needs a new run)" if row["status"] == "failed" else ""
        console.print(f"  resume {where}{fix}: [bold]tailor resume {run}[/]", highlight=False)


def config_facts(run: Path) -> dict:
    """The settings `runs show` names, from the run's config.yaml ({} if it is missing or unreadable)."""
    try:
        c = yaml.safe_load((run / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(c, dict):
        return {}
    model, task, t = c.get("model") or {}, c.get("task") or {}, c.get("train") or {}
    return {"model": model.get("path"), "task": task.get("type"), "strategy": (c.get("strategy") or {}).get("name"),
            "seed": c.get("seed"), "lr": t.get("lr"), "batch_size": t.get("batch_size"), "grad_accum": t.get("grad_accum"),
            "max_steps": t.get("max_steps"), "epochs": t.get("epochs"), "precision": t.get("precision"),
            "data": (c.get("data") or {}).get("train") or _task_data(task)}


def config_summary(run: Path) -> list[str]:
    f = config_facts(run)
    if not f:
        return [f"({CONFIG} is missing or unreadable)"]
    length = f"{f['max_steps']} steps" if f["max_steps"] else f"{f['epochs']} epochs"
    return [f"model {f['model']}, task {f['task']}, strategy {f['strategy']}, seed {f['seed']}",
            f"lr {f['lr']}, batch {f['batch_size']} x {f['grad_accum']}, {length}, precision {f['precision']}",
            f"data {', '.join(f['data'])}"]


def _task_data(task: dict) -> list[str]:
    """A multitask config's data: NAME: file(s) per sub-task."""
    return [f"{t.get('name')}: " + ", ".join((t.get("data") or {}).get("train") or []) for t in task.get("tasks") or []]


def _render_metrics(metrics: dict | None, console: Console) -> None:
    if not metrics or not metrics.get("fine_tuned"):
        return
    table = Table("split", "metric", "pre-trained", "fine-tuned")
    base = metrics.get("baseline") or {}
    for split, values in metrics["fine_tuned"].items():
        for name, value in values.items():
            if isinstance(value, int | float):
                table.add_row(split, name, _num(base.get(split, {}).get(name)), _num(value))
    console.print(table)
