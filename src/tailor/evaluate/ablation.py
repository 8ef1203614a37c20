"""An ablation's table: runs' metrics.json grouped by setting, mean ± std over seeds; markdown, CSV, PNG, terminal."""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tailor.tasks.base import LOWER_IS_BETTER

# (key in a row, column title, digits) for what each run's `train` block says about its cost
RESOURCES = [("trainable", "trainable params", 0), ("train_seconds", "train s", 1),
             ("tokens_per_second", "real tokens/s", 0), ("peak_memory_mb", "peak memory MB", 0)]
EXTRA_METRICS = ("accuracy", "macro_f1", "perplexity")


@dataclass
class Row:
    """One setting (or the baseline): per-seed values of every quantity shown."""

    setting: str
    done: int
    total: int
    values: dict[str, list[float]] = field(default_factory=dict)
    baseline: bool = False
    best: bool = False

    def mean_std(self, key: str) -> tuple[float | None, float | None]:
        vals = self.values.get(key) or []
        if not vals:
            return None, None
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


@dataclass
class AblationTable:
    """What the ablation shows: the split, the metrics (first = main), and the rows."""

    split: str
    metrics: list[str]
    rows: list[Row]

    @property
    def main(self) -> str:
        return self.metrics[0]


def pick_split(results: list[dict]) -> str:
    """test where the runs have a test split, else validation."""
    has_test = any(m.get("fine_tuned", {}).get("test") for m in results)
    return "test" if has_test else "validation"


def default_metrics(train_metric: str, results: list[dict], split: str) -> list[str]:
    """train.metric first, then accuracy / macro_f1 / perplexity where the runs report them."""
    seen = {k for m in results for k in m.get("fine_tuned", {}).get(split, {})}
    return [train_metric] + [k for k in EXTRA_METRICS if k in seen and k != train_metric]


def cell_values(result: dict, metrics: list[str], split: str) -> dict[str, float]:
    """The numbers one finished run contributes: its metrics on the split, and its cost."""
    scores = result.get("fine_tuned", {}).get(split, {})
    fit = result.get("train", {})
    out = {k: float(scores[k]) for k in metrics if isinstance(scores.get(k), int | float)}
    cost = {"trainable": fit.get("strategy", {}).get("trainable"), **{k: fit.get(k) for k, _, _ in RESOURCES[1:]}}
    out |= {k: float(v) for k, v in cost.items() if isinstance(v, int | float)}
    return out


def build_table(cells: list[tuple[str, dict | None]], metrics: list[str], split: str,
                baseline: dict | None) -> AblationTable:
    """Rows per setting in first-seen order (cells: (setting, metrics.json or None if unfinished)); best marked."""
    rows: dict[str, Row] = {}
    for setting, result in cells:
        row = rows.setdefault(setting, Row(setting, 0, 0))
        row.total += 1
        if result is None:
            continue
        row.done += 1
        for k, v in cell_values(result, metrics, split).items():
            row.values.setdefault(k, []).append(v)
    table = AblationTable(split, metrics, list(rows.values()))
    _mark_best(table)
    scores = (baseline or {}).get(split, {})
    if scores:
        values = {k: [float(scores[k])] for k in metrics if isinstance(scores.get(k), int | float)}
        table.rows.insert(0, Row("baseline (pre-trained)", 1, 1, values, baseline=True))
    return table


def _mark_best(table: AblationTable) -> None:
    lower = table.main.split("/")[-1] in LOWER_IS_BETTER
    scored = [(mean, r) for r in table.rows if (mean := r.mean_std(table.main)[0]) is not None]
    if scored:
        best = (min if lower else max)(scored, key=lambda t: t[0])[1]
        best.best = True


def _fmt(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def cell_text(row: Row, key: str, digits: int = 4) -> str:
    """'mean ± std' (std over seeds; just the mean for one seed)."""
    mean, std = row.mean_std(key)
    if mean is None:
        return "-"
    if key == "trainable":  # the same for every seed
        std = None
    return _fmt(mean, digits) + (f" ± {_fmt(std, digits)}" if std is not None else "")


def columns(table: AblationTable) -> list[tuple[str, str, int]]:
    return [(m, m, 4) for m in table.metrics] + RESOURCES


def _seeds(row: Row) -> str:
    return "-" if row.baseline else f"{row.done}/{row.total}"


def to_markdown(table: AblationTable) -> list[str]:
    """The table as markdown rows; the best setting's row in bold with a ★."""
    cols = columns(table)
    out = ["| setting | seeds | " + " | ".join(title for _, title, _ in cols) + " | best |",
           "|---|---:|" + "---:|" * len(cols) + ":---:|"]
    for r in table.rows:
        cells = [cell_text(r, key, digits) for key, _, digits in cols]
        if r.best:
            cells = [f"**{c}**" for c in cells]
        out.append(f"| {r.setting} | {_seeds(r)} | " + " | ".join(cells) + f" | {'★' if r.best else ''} |")
    return out


def write_csv(table: AblationTable, path: Path) -> None:
    """One row per setting: mean and std of each quantity, seeds finished, best flag."""
    keys = [key for key, _, _ in columns(table)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "seeds", *[f"{k}_{s}" for k in keys for s in ("mean", "std")], "best"])
        for r in table.rows:
            stats = [r.mean_std(k) for k in keys]
            flat = ["" if v is None else round(v, 6) for pair in stats for v in pair]
            w.writerow([r.setting, "" if r.baseline else r.done, *flat, int(r.best)])


def plot(table: AblationTable, path: Path, title: str) -> bool:
    """Bar per setting (mean ± std of the main metric), the baseline as a dashed line; False if nothing to plot."""
    bars = [(r, mean, r.mean_std(table.main)[1] or 0.0) for r in table.rows
            if not r.baseline and (mean := r.mean_std(table.main)[0]) is not None]
    if not bars:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(bars) + 2), 3.8), dpi=110)
    colors = ["tab:green" if r.best else "tab:blue" for r, _, _ in bars]
    ax.bar(range(len(bars)), [m for _, m, _ in bars], yerr=[s for _, _, s in bars], capsize=4, color=colors)
    base = next((r.mean_std(table.main)[0] for r in table.rows if r.baseline), None)
    if base is not None:
        ax.axhline(base, color="gray", linestyle="--")
        ax.text(len(bars) - 0.5, base, "pre-trained baseline ", color="dimgray", fontsize="small",
                ha="right", va="bottom")
    ax.set_xticks(range(len(bars)), [r.setting for r, _, _ in bars], rotation=20, ha="right")
    ax.set_ylabel(f"{table.split} {table.main}")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def render(table: AblationTable, console: Console, title: str) -> None:
    """The table in the terminal (rich)."""
    t = Table(title=title)
    t.add_column("setting")
    t.add_column("seeds", justify="right")
    for _, col, _ in columns(table):
        t.add_column(col, justify="right")
    t.add_column("best", justify="center")
    for r in table.rows:
        style = "bold green" if r.best else ("dim" if r.baseline else None)
        t.add_row(r.setting, _seeds(r), *[cell_text(r, k, d) for k, _, d in columns(table)], "★" if r.best else "", style=style)
    console.print(t)
