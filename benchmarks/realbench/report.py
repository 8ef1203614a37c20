"""Rows, ratios, FLOP/s and the tables (printed, and written as markdown and JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FLOPS_NOTE = (
    "Achieved FLOP/s = useful FLOPs / training seconds, as a fraction of the bf16 matmul peak measured in this run "
    "(largest square bf16 matmul, torch's default threads). Useful FLOPs = 6 x P_body x real tokens "
    "+ 6 x P_head x trained targets, where P_body = the parameters of the transformer blocks and the final norm "
    "(the token-embedding lookup is not a matmul and is not counted), P_head = the LM head (tied to the embedding, "
    "vocabulary x hidden), counted only at positions that carry a loss (what a side must compute; computing it "
    "elsewhere is waste). The classification jobs have no LM head at all (a small head on one position per "
    "example, not counted). Attention-score FLOPs (~12 x layers x hidden x context per token), activation "
    "recomputation and the optimiser are not counted, so this is a lower bound on the work done."
)


JOB_NOTES = {
    "classification": [
        "tailor sorts examples by length within shuffled groups and pads each batch to a multiple of 8 tokens; "
        "the Trainer pads a random batch to its longest example. tailor's head is dense + tanh + linear on the "
        "prompt's last token; AutoModelForSequenceClassification's is one linear layer on the last non-padding token."
    ],
    "chat": [
        "TRL's packing rows hold up to max_length tokens, so at the same batch size it takes fewer optimiser steps "
        "than the padding sides; the reply loss compares models after different numbers of updates."
    ],
    "lm": [
        "tailor packs pieces into blocks of max_length (a piece may attend to the one before it, across the eos) "
        "and drops a last block under half full; TRL's best-fit-decreasing packing keeps pieces apart (position "
        "ids); the Trainer pads each piece. At the same batch size (rows) the packing sides take several times "
        "fewer optimiser steps than the Trainer, so held-out perplexity compares models after different numbers "
        "of updates.",
        "The Trainer never trains the eos after each piece (SmolLM2's pad token is its eos, and "
        "DataCollatorForLanguageModeling masks padding by id); perplexity is scored without that eos.",
    ],
}


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def useful_flops(kind: str, counts: dict, params: dict) -> float | None:
    real, trained = counts.get("real"), counts.get("trained")
    if real is None:
        return None
    if kind == "classification":
        return 6.0 * params["body"] * real
    return None if trained is None else 6.0 * params["body"] * real + 6.0 * params["head"] * trained


def training_row(name: str, kind: str, r: dict, params: dict, peak_gflops: float | None) -> dict:
    """One side's figures as the table shows them (an 'error' row if it failed)."""
    row = {"side": name, "busy": r.get("busy", {}), "log": r.get("log")}
    if "error" in r:
        return row | {"error": r["error"]}
    counts, secs = r["counts"], r["train_s"]
    real, positions = counts.get("real"), counts.get("positions")
    flops = useful_flops(kind, counts, params)
    gflops = flops / secs / 1e9 if flops and secs else None
    return row | {
        "examples": r["examples"],
        "steps": r["steps"],
        "real_tokens": real,
        "trained": counts.get("trained"),
        "padding": 1 - real / positions if positions else None,
        "train_s": secs,
        "wall_s": r.get("wall_s"),
        "s_per_step": secs / max(r["steps"], 1),
        "tokens_per_s": real / secs if secs else None,
        "peak_mb": r["peak_mb"],
        "process_peak_mb": max(r.get("load_peak_mb", 0), r["peak_mb"], r.get("end_peak_mb", 0)),
        "metric": r.get("metric", {}),
        "gflops": gflops,
        "of_peak": gflops / peak_gflops if gflops and peak_gflops else None,
        "raw": r,
    }


def add_ratios(rows: list[dict], base: str = "tailor", key: str = "tokens_per_s") -> None:
    """For every row: the base row's throughput and peak memory divided by this row's."""
    ref = next((r for r in rows if r["side"] == base and "error" not in r), None)
    for r in rows:
        if ref is None or "error" in r or r is ref:
            continue
        r["speed_ratio"] = ref[key] / r[key] if r.get(key) else None
        r["memory_ratio"] = ref["peak_mb"] / r["peak_mb"] if r.get("peak_mb") else None


def _busy_cells(b: dict) -> list[str]:
    return [
        f"{b.get('load1_before', 0):.2f} / {b.get('load1_after', 0):.2f}",
        f"{b.get('foreign_cores', 0):.2f}",
        "NOISY" if b.get("noisy") else "",
    ]


def metric_text(m: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in m.items()) or "-"


def training_table(rows: list[dict]) -> list[str]:
    head = [
        "side",
        "examples",
        "steps",
        "real tokens",
        "trained targets",
        "padding",
        "train s",
        "s/step",
        "real tok/s",
        "tailor ÷ this (tok/s)",
        "peak MB",
        "tailor ÷ this (memory)",
        "process peak MB",
        "metric",
        "GFLOP/s",
        "of bf16 peak",
        "load 1-min before / after",
        "others' cores",
        "noisy",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            cells = (
                [r["side"], f"FAILED (see {r['log']})"]
                + [""] * (len(head) - 5)
                + _busy_cells(r["busy"])
            )
        else:
            cells = [
                r["side"],
                _fmt(r["examples"]),
                _fmt(r["steps"]),
                _fmt(r["real_tokens"]),
                _fmt(r["trained"]),
                f"{100 * r['padding']:.1f}%" if r["padding"] is not None else "-",
                _fmt(r["train_s"], 1),
                _fmt(r["s_per_step"], 3),
                _fmt(r["tokens_per_s"], 1),
                _ratio(r.get("speed_ratio")),
                _fmt(r["peak_mb"], 0),
                _ratio(r.get("memory_ratio")),
                _fmt(r["process_peak_mb"], 0),
                metric_text(r["metric"]),
                _fmt(r["gflops"], 1),
                f"{100 * r['of_peak']:.1f}%" if r["of_peak"] else "-",
                *_busy_cells(r["busy"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(v: float | None) -> str:
    return f"{v:.2f}x" if v else "-"


def generation_table(rows: list[dict]) -> list[str]:
    head = [
        "side",
        "prompts",
        "new tokens",
        "seconds",
        "new tok/s",
        "tailor ÷ plain (tok/s)",
        "peak MB",
        "same tokens as plain",
        "load 1-min before / after",
        "others' cores",
        "noisy",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            cells = (
                [r["side"], f"FAILED (see {r['log']})"]
                + [""] * (len(head) - 5)
                + _busy_cells(r["busy"])
            )
        else:
            cells = [
                r["side"],
                _fmt(r["prompts"]),
                _fmt(r["new_tokens"]),
                _fmt(r["gen_s"], 2),
                _fmt(r["tokens_per_s"], 1),
                _ratio(r.get("speed_ratio")),
                _fmt(r["peak_mb"], 0),
                r.get("same_as_plain", "-"),
                *_busy_cells(r["busy"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def work_check(rows: list[dict]) -> list[str]:
    """Did every side train on the same examples, real tokens and trained targets? Says so, or shows the difference."""
    ok = [r for r in rows if "error" not in r]
    out = []
    checks = [
        ("examples", "examples"),
        ("real_tokens", "real tokens"),
        ("trained", "trained targets"),
    ]
    if any("test_examples" in r.get("raw", {}) for r in ok):
        checks.append(("test_examples", "test examples"))
    for key, what in checks:
        values = {r["side"]: r.get(key, r.get("raw", {}).get(key)) for r in ok}
        if len(set(values.values())) == 1:
            out.append(f"every side: {_fmt(next(iter(values.values())))} {what}")
        else:
            out.append(f"{what} differ: " + ", ".join(f"{k} {_fmt(v)}" for k, v in values.items()))
    return ["; ".join(out)] if out else []


def summary_lines(rows: list[dict]) -> list[str]:
    """'tailor vs X: 1.54x real tokens/s, 0.85x peak memory; metric a vs b' for every other side."""
    ref = next((r for r in rows if r["side"] == "tailor" and "error" not in r), None)
    out = []
    for r in rows:
        if ref is None or r is ref or "error" in r or r.get("speed_ratio") is None:
            continue
        metric = "; ".join(
            f"{k} {ref['metric'].get(k, float('nan')):.4g} vs {v:.4g}"
            for k, v in r["metric"].items()
        )
        noisy = " (NOISY)" if ref["busy"].get("noisy") or r["busy"].get("noisy") else ""
        out.append(
            f"tailor vs {r['side']}: {r['speed_ratio']:.2f}x real tokens/s, {r['memory_ratio']:.2f}x peak "
            f"memory{'; ' + metric if metric else ''}{noisy}"
        )
    return out


def write(out: Path, results: dict, markdown: list[str]) -> None:
    """results.json (everything, per side) and results.md (the tables)."""
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text("\n".join(markdown) + "\n")


HYPER_NOTE = (
    "Shared by every side: data, examples, epochs, batch size, learning rate, seed, max length, precision, "
    "gradient checkpointing (--gradient-checkpointing; TRL's own default is on, here it follows the suite). "
    "Left at each tool's default: warm-up (tailor 5% of steps, Trainer and TRL none), weight decay (tailor "
    "0.01, Trainer and TRL 0), linear decay and gradient clipping at 1.0 (all), AdamW (Trainer and TRL: "
    "adamw_torch_fused; tailor: fused where torch has it), tailor's length-bucketed batches vs the Trainer's "
    "random order, tailor's packing (lm) vs TRL's best-fit-decreasing packing. Timing: tailor's own "
    "train_seconds (each step from collation to optimiser step); Trainer/TRL: from on_train_begin to the "
    "last on_step_end. Neither includes evaluation (none runs during training) nor checkpoints; 'wall' in "
    "results.json is the whole fit() / trainer.train() call (tailor's includes its final checkpoint)."
)


def header(r: dict, precision: str) -> list[str]:
    """The markdown file's head: command, machine, versions, the matmul peak and what the figures mean."""
    gf = r.get("matmul", {}).get("gflops", {})
    return [
        "# tailor vs the Hugging Face Trainer and TRL on SmolLM2-135M-Instruct",
        "",
        f"Command: `{' '.join(sys.argv)}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items()),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        "",
        "Settings: "
        + ", ".join(
            f"{k} {v}" for k, v in r["settings"].items() if k not in ("data", "out", "model")
        ),
        "",
        f"Precision: {precision} (autocast); parameters: {r['params']}",
        "",
        "bf16 matmul GFLOP/s (this run): " + ", ".join(f"{k} {v:,.0f}" for k, v in gf.items()),
        "",
        FLOPS_NOTE,
        "",
        HYPER_NOTE,
        "",
        "NOISY: the 1-minute load average was above 0.5 before the side started, or other processes used more "
        "than 0.25 cores on average while it ran; such figures are not results.",
        "",
    ]
