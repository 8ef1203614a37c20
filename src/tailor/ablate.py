"""`tailor ablate`: settings x seeds, one `tailor train` subprocess per cell, aggregated into one table.

    runs/<name>-ablation-<nnn>/
      ablation.json          the grid, each cell's id, overrides and status (what --resume reads)
      cells/<cell-id>/       train.log and the cell's run directory (<name>-001/)
      ablation.md, ablation.csv, ablation.png

A subprocess per cell keeps peak memory per run, and a crash or kill loses only that cell.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from rich.console import Console

from tailor.config import ConfigError, RunConfig, load_config
from tailor.evaluate import ablation as table_
from tailor.models.load import ModelLoadError, locate
from tailor.rundir import create_run_dir, write_json

MANIFEST = "ablation.json"
RESERVED = {"seed": "set by --seeds", "output_dir": "the ablation directory decides where cells go"}
BASELINE_KEYS = ("model.", "data.", "task.", "eval.")  # varying these changes what the baseline scores


@dataclass
class Cell:
    """One training run of the grid: a setting (the varied values) and a seed."""

    id: str
    setting: str
    overrides: list[str]
    seed: int
    baseline: bool = False  # this cell also scores the pre-trained model
    status: str = "pending"  # pending | running | done | failed | interrupted
    run: str | None = None  # the run directory, relative to the ablation directory
    returncode: int | None = None
    seconds: float | None = None


@dataclass
class Grid:
    """What the user asked for: config, fixed overrides, varied keys, seeds, table metrics."""

    config: str
    overrides: list[str]
    vary: dict[str, list[str]]
    seeds: int
    metrics: list[str] = field(default_factory=list)

    def differences(self, other: Grid) -> list[str]:
        """Why `other` is not the same ablation (empty if it is)."""
        out = []
        for key, flag in (("config", "CONFIG"), ("overrides", "overrides"), ("vary", "--vary"), ("seeds", "--seeds")):
            if getattr(self, key) != getattr(other, key):
                out.append(f"{flag}: {getattr(other, key)!r} differs from this ablation's {getattr(self, key)!r}")
        return out


@dataclass
class Ablation:
    root: Path
    cells: list[Cell]
    table: table_.AblationTable | None = None

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if c.status != "done"]


def parse_vary(items: list[str]) -> dict[str, list[str]]:
    """`key=v1,v2` flags -> {key: [v1, v2]}; every problem, naming the flag, in one ConfigError."""
    vary: dict[str, list[str]] = {}
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        key, values = key.strip(), [v.strip() for v in raw.split(",")]
        if not sep or not key or not all(values):
            problems.append(f"--vary '{item}': expected key=value1,value2 (e.g. strategy.name=full,lora)")
        elif key in RESERVED:
            problems.append(f"--vary '{item}': {key} cannot be varied ({RESERVED[key]})")
        elif key in vary:
            problems.append(f"--vary '{item}': {key} is already varied; give all its values in one --vary")
        elif len(set(values)) < len(values):
            problems.append(f"--vary '{item}': a value is repeated")
        else:
            vary[key] = values
    if problems:
        raise ConfigError("--vary", problems)
    return vary


def expand(grid: Grid) -> list[Cell]:
    """The cartesian product of the varied values x seeds 0..N-1; the first cell scores the baseline."""
    keys = list(grid.vary)
    cells = []
    for i, values in enumerate(itertools.product(*(grid.vary[k] for k in keys))):
        pairs = [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
        words = [v if len(keys) == 1 else f"{k.split('.')[-1]}-{v}" for k, v in zip(keys, values, strict=True)]
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "-", "_".join(words) or "default")[:60]
        cells += [Cell(f"{i:02d}-{slug}-seed{s}", " ".join(pairs) or "default", pairs, s) for s in range(grid.seeds)]
    cells[0].baseline = True
    return cells


def cell_overrides(grid: Grid, cell: Cell, cell_dir: Path | None = None) -> list[str]:
    """The dotted overrides one cell trains with (later ones win)."""
    out = [*grid.overrides, *cell.overrides, f"seed={cell.seed}"]
    if not cell.baseline:  # the pre-trained model is scored once, not per cell
        out.append("eval.baseline=false")
    if cell_dir is not None:
        out.append(f"output_dir={cell_dir.resolve()}")
    return out


def check_grid(grid: Grid, cells: list[Cell], config: str) -> RunConfig:
    """Validate every setting's config and model location up front; all problems at once (ConfigError)."""
    problems = [f"override '{o}': {o.partition('=')[0]} cannot be set here ({RESERVED[o.partition('=')[0].strip()]})"
                for o in grid.overrides if o.partition("=")[0].strip() in RESERVED]
    first: RunConfig | None = None
    for setting in dict.fromkeys(c.setting for c in cells):
        cell = next(c for c in cells if c.setting == setting)
        try:
            cfg = load_config(config, cell_overrides(grid, cell))
        except ConfigError as e:
            problems += [p for p in e.problems if p not in problems]
            continue
        first = first or cfg
        try:
            locate(cfg.model)
        except ModelLoadError as e:
            if f"model.path: {e}" not in problems:
                problems.append(f"model.path: {e}")
    if problems or first is None:
        raise ConfigError(config, problems)
    return first


def write_snapshot(config: str, root: Path) -> Path:
    """The config as it is now, paths made absolute: every cell, also a resumed one, trains exactly this."""
    raw = yaml.safe_load(Path(config).read_text()) or {}  # valid: check_grid has loaded it
    raw.setdefault("name", Path(config).stem)
    base = Path(config).resolve().parent

    def pin(v: object, relative_to_config: bool = True) -> object:
        if not isinstance(v, str) or v == "tailor-tiny":
            return v
        for p in (Path(v), base / v) if relative_to_config else (Path(v),):  # the order load_config uses
            if p.exists():
                return str(p.resolve())
        return v

    task = raw["task"] if isinstance(raw.get("task"), dict) else {}
    sections = [raw.get("data"), *(t.get("data") for t in task.get("tasks") or [] if isinstance(t, dict))]
    for data in (d for d in sections if isinstance(d, dict)):
        for key in (k for k in ("train", "validation", "test") if k in data):
            data[key] = [pin(v) for v in data[key]] if isinstance(data[key], list) else pin(data[key])
    model = raw.get("model")
    if isinstance(model, dict):
        model.update({k: pin(model[k], False) for k in ("path", "tokenizer") if k in model})
    elif model is not None:
        raw["model"] = pin(model, False)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def config_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _save(root: Path, grid: Grid, cells: list[Cell], extra: dict) -> None:
    write_json(root / MANIFEST, {**extra, "grid": asdict(grid), "cells": [asdict(c) for c in cells]})


def start(grid: Grid, console: Console) -> Ablation:
    """A new ablation directory; every cell runs."""
    grid.config = str(Path(grid.config).resolve())
    cells = expand(grid)
    cfg = check_grid(grid, cells, grid.config)
    root = create_run_dir(cfg.output_dir, f"{cfg.name}-ablation")
    snapshot = write_snapshot(grid.config, root)
    check_grid(grid, cells, str(snapshot))
    extra = {"name": cfg.name, "snapshot": snapshot.name, "config_sha256": config_hash(grid.config),
             "train_metric": cfg.train.metric, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _save(root, grid, cells, extra)
    console.print(f"ablation directory: [bold]{root}[/] ({len(cells)} cells)", highlight=False)
    return run_cells(root, console)


def resume(root: Path, asked: Grid | None, console: Console) -> Ablation:
    """Run the cells of an existing ablation that have not finished; finished ones are left untouched."""
    path = root / MANIFEST
    if not path.is_file():
        raise ConfigError(f"--resume {root}", [f"no {MANIFEST} in {root}: give a directory made by tailor ablate"])
    manifest = json.loads(path.read_text())
    grid = Grid(**manifest["grid"])
    if asked is not None:
        asked.config = str(Path(asked.config).resolve())
        asked.metrics = asked.metrics or grid.metrics
        problems = grid.differences(asked)
        if problems:
            raise ConfigError(f"--resume {root}", problems + ["leave them out to resume as started, or start a new ablation"])
        grid.metrics = asked.metrics
    if not Path(grid.config).is_file() or config_hash(grid.config) != manifest["config_sha256"]:
        console.print(f"note: {grid.config} changed since the ablation started; its cells keep training the "
                      f"config as it was then ({root / manifest['snapshot']})", highlight=False)
    check_grid(grid, expand(grid), str(root / manifest["snapshot"]))
    return run_cells(root, console, grid)


def finished_run(cell_dir: Path) -> Path | None:
    """The cell's run directory, if its run finished (metrics.json written)."""
    runs = sorted(p.parent for p in cell_dir.glob("*/metrics.json"))
    return runs[-1] if runs else None


def run_cells(root: Path, console: Console, grid: Grid | None = None) -> Ablation:
    """Run every unfinished cell (a subprocess each), then write the table."""
    manifest = json.loads((root / MANIFEST).read_text())
    grid = grid or Grid(**manifest["grid"])
    extra = {k: v for k, v in manifest.items() if k not in ("grid", "cells")}
    cells = [Cell(**c) for c in manifest["cells"]]
    for c in cells:
        run = finished_run(root / "cells" / c.id)
        if run is not None:
            c.status, c.run = "done", str(run.relative_to(root))
        elif c.status in ("done", "running"):  # its files are gone, or an earlier ablate process was killed
            c.status = "pending"
    todo = [c for c in cells if c.status != "done"]
    if len(todo) < len(cells):
        console.print(f"{len(cells) - len(todo)} of {len(cells)} cells already finished; running the other {len(todo)}")
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        for k, cell in enumerate(todo, 1):
            console.print(f"[{k}/{len(todo)}] {cell.id}: {' '.join([*cell.overrides, f'seed={cell.seed}'])}", highlight=False)
            _run_cell(root, grid, cell, cells, extra, console)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    ablation = Ablation(root, cells)
    ablation.table = write_outputs(root, grid, cells, extra, console)
    return ablation


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    """In the child (Linux): be killed if the ablate process dies, so no orphan keeps writing a cell."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_cell(root: Path, grid: Grid, cell: Cell, cells: list[Cell], extra: dict, console: Console) -> None:
    """`python -m tailor.cli train CONFIG overrides... output_dir=cells/<id>`, logged to cells/<id>/train.log."""
    cell_dir = root / "cells" / cell.id
    if cell_dir.exists():  # half-written by an interrupted or failed attempt
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    config = str(root / extra["snapshot"])  # the config as it was when the ablation started
    cmd = [sys.executable, "-m", "tailor.cli", "train", config, *cell_overrides(grid, cell, cell_dir)]
    cell.status, cell.returncode, cell.run = "running", None, None
    _save(root, grid, cells, extra)
    t0 = time.monotonic()
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    with (cell_dir / "train.log").open("w") as log:
        try:
            cell.returncode = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec).returncode
        except KeyboardInterrupt:
            cell.status, cell.seconds = "interrupted", round(time.monotonic() - t0, 1)
            _save(root, grid, cells, extra)
            console.print(f"interrupted; finish the rest with: tailor ablate --resume {root}", highlight=False)
            raise
    cell.seconds = round(time.monotonic() - t0, 1)
    run = finished_run(cell_dir)
    cell.status = "done" if cell.returncode == 0 and run is not None else "failed"
    cell.run = str(run.relative_to(root)) if run is not None else None
    _save(root, grid, cells, extra)
    if cell.status == "done":
        console.print(f"    done in {cell.seconds:.0f} s", highlight=False)
    else:
        tail = (cell_dir / "train.log").read_text(errors="replace").strip().splitlines()[-6:]
        console.print(f"    [red]failed[/] (exit {cell.returncode}); {cell_dir / 'train.log'}:\n      "
                      + "\n      ".join(tail), highlight=False)


def write_outputs(root: Path, grid: Grid, cells: list[Cell], extra: dict, console: Console) -> table_.AblationTable:
    """ablation.md, ablation.csv, ablation.png and the terminal table, from the finished cells' metrics.json."""
    results = {c.id: json.loads((root / c.run / "metrics.json").read_text()) for c in cells if c.status == "done" and c.run}
    split = table_.pick_split(list(results.values()))
    metrics = grid.metrics or table_.default_metrics(extra["train_metric"], list(results.values()), split)
    scores = [r.get("fine_tuned", {}).get(split, {}) for r in results.values()]
    missing = [m for m in metrics if results and not any(m in s for s in scores)]
    if missing:
        known = sorted({k for s in scores for k, v in s.items() if isinstance(v, int | float)})
        console.print(f"[yellow]warning[/] --metric {', '.join(missing)}: not among the runs' {split} metrics "
                      f"({', '.join(known)})", highlight=False)
    base_cell = next((c for c in cells if c.id in results and results[c.id].get("baseline")), None)
    baseline = results[base_cell.id]["baseline"] if base_cell else None
    table = table_.build_table([(c.setting, results.get(c.id)) for c in cells], metrics, split, baseline)
    title = f"{extra['name']} ablation: {split} {', '.join(metrics)} (mean ± std over {grid.seeds} seed{'s' if grid.seeds != 1 else ''})"
    table_.render(table, console, title)
    table_.write_csv(table, root / "ablation.csv")
    has_plot = table_.plot(table, root / "ablation.png", f"{extra['name']}: {split} {table.main}")
    lines = _markdown(root, grid, cells, extra, table, base_cell) + (["![ablation](ablation.png)", ""] if has_plot else [])
    lines += ["## Cells", "", "| cell | setting | seed | status | run | time s |", "|---|---|---:|---|---|---:|"]
    lines += [f"| {c.id} | {c.setting} | {c.seed} | {c.status} | {c.run or '-'} | {c.seconds if c.seconds is not None else '-'} |"
              for c in cells]
    (root / "ablation.md").write_text("\n".join(lines) + "\n")
    console.print(f"table: [bold]{root / 'ablation.md'}[/] (and ablation.csv, ablation.png)", highlight=False)
    return table


def _markdown(root: Path, grid: Grid, cells: list[Cell], extra: dict, table: table_.AblationTable,
              base_cell: Cell | None) -> list[str]:
    """The heading, what was varied, how to read the numbers, and the table."""
    done = sum(c.status == "done" for c in cells)
    varied = "; ".join(f"{k} = {', '.join(v)}" for k, v in grid.vary.items()) or "nothing (seeds only)"
    lines = [f"# {extra['name']}: ablation", "",
             f"- config: `{grid.config}` as it was at the start (`{extra['snapshot']}`)" + (f", overrides: `{' '.join(grid.overrides)}`" if grid.overrides else ""),
             f"- varied: {varied}; seeds 0..{grid.seeds - 1} (a seed also reseeds the train/validation/test split)",
             f"- cells finished: {done} of {len(cells)}",
             f"- {table.split} metrics, mean ± std over the finished seeds (sample std; one seed shows the mean); "
             f"cost columns from each run's metrics.json `train` block; ★ = best {table.main}"]
    if base_cell is not None:
        lines.append(f"- baseline row: the pre-trained model, scored once in cell `{base_cell.id}` (seed {base_cell.seed}'s split)")
        if any(k.startswith(BASELINE_KEYS) for k in grid.vary):
            lines.append("- note: the varied keys change the model, data or task, so the baseline belongs to "
                         f"`{base_cell.setting}` only")
    return lines + ["", *table_.to_markdown(table), ""]
