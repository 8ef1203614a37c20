"""What the data checks found, for people and for the run's records: the report (data.json), the terminal
rendering of `tailor data check`, warnings summarised by kind before training, a rough training time."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tailor.data.readers import Problem


def estimate_time(train_tokens_total: int, tokens_per_second: float) -> str:
    """A rough human duration for training on this many tokens, e.g. 'about 4 min'."""
    if tokens_per_second <= 0:
        return "unknown"
    minutes = train_tokens_total / tokens_per_second / 60
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {round(minutes)} min"
    hours = minutes / 60
    if hours < 48:
        return f"about {hours:.1f} h".replace(".0 h", " h")
    return f"about {round(hours / 24)} days"


@dataclass
class DataReport:
    """Everything the data checks found: problems, token statistics, split sizes."""

    problems: list[Problem]
    stats: dict = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    leakage: dict = field(
        default_factory=dict
    )  # what data.leakage did: setting, found, dropped from train

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_json(self, limit: int = 1000) -> dict:
        """For data.json: sizes, statistics, counts, and the first `limit` problems of each severity."""
        errors, warnings = self.errors(), self.warnings()
        return {
            "splits": self.splits,
            "token_statistics": self.stats,
            "n_errors": len(errors),
            "n_warnings": len(warnings),
            "warning_kinds": count_kinds(warnings),
            "errors": [asdict(p) for p in errors[:limit]],
            "warnings": [asdict(p) for p in warnings[:limit]],
            **({"leakage": self.leakage} if self.leakage else {}),
        }


def count_kinds(problems: list[Problem]) -> dict[str, int]:
    """How many problems of each kind, most frequent first."""
    return dict(Counter(p.kind or "other" for p in problems).most_common())


def kinds_line(problems: list[Problem]) -> str:
    """e.g. '55 duplicate within train, 7 leakage'."""
    return ", ".join(f"{n} {kind}" for kind, n in count_kinds(problems).items())


def print_warnings(console: Console, warnings: list[Problem], shown: int = 3) -> None:
    """Data warnings before training: all of a few; of many, a count per kind and the first `shown`
    (every one of them is in the run's data.json)."""
    if len(warnings) <= shown + 2:
        for p in warnings:
            console.print(f"[yellow]warning[/] {p}", soft_wrap=True, highlight=False)
        return
    console.print(
        f"[yellow]{len(warnings)} data warnings[/] ({kinds_line(warnings)}); all are listed in the "
        "run's data.json. The first ones:",
        soft_wrap=True,
        highlight=False,
    )
    for p in warnings[:shown]:
        console.print(f"  [yellow]warning[/] {p}", soft_wrap=True, highlight=False)


def render_report(report: DataReport, console: Console, limit: int = 20) -> None:
    """Errors, then warnings (file:line, at most `limit` of each), then token statistics per split."""
    errors, warnings = report.errors(), report.warnings()
    for severity, style, items in (("error", "red", errors), ("warning", "yellow", warnings)):
        for p in items[:limit]:
            console.print(Text.assemble((f"{severity}: ", style), str(p)))
        if len(items) > limit:
            console.print(Text(f"... and {len(items) - limit} more {severity}s", style=style))
    n_err, n_warn = len(errors), len(warnings)
    summary = f"{n_err} error(s), {n_warn} warning(s)" if report.problems else "no problems found"
    if n_warn > limit:
        summary += f" (warnings: {kinds_line(warnings)})"
    console.print(Text(summary, style="red" if n_err else "yellow" if n_warn else "green"))
    per_split = report.stats.get("splits", {})
    if not per_split and not report.splits:
        return
    table = Table(title=f"tokens per example (max_length {report.stats.get('max_length', '?')})")
    for column in ("split", "examples", "mean", "p50", "p95", "max", "tokens", "truncated"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in dict.fromkeys([*report.splits, *per_split]):
        s = per_split.get(split, {})
        count = report.splits.get(split, s.get("count", 0))
        if not s.get("count"):
            table.add_row(split, f"{count:,}", *["-"] * 6)
            continue
        truncated = f"{s['n_truncated']:,} ({s['truncated_fraction']:.0%})"
        numbers = (
            f"{s['mean']:.1f}",
            str(s["p50"]),
            str(s["p95"]),
            str(s["max"]),
            f"{s['total']:,}",
        )
        table.add_row(split, f"{count:,}", *numbers, truncated)
    console.print(table)
    if "train_tokens_total" in report.stats:
        total, epochs = report.stats["train_tokens_total"], report.stats.get("epochs", 1)
        msg = f"training sees {total:,} tokens ({epochs} epoch(s), after truncation)"
        console.print(msg, highlight=False)
