"""Peak memory and trainable parameters per strategy, from a `tailor ablate` table; asserts head, lora < full.

    python benchmarks/strategy_memory.py --ablation runs/sentiment-ablation-001   # an existing ablation
    python benchmarks/strategy_memory.py --config examples/sentiment.yaml train.max_steps=60

With --config it first runs `tailor ablate CONFIG --vary strategy.name=full,head,lora` (one subprocess
per cell, so each peak is its own run's). Peak memory is the resident set of the training process
(CPU) or the allocator peak (GPU); on tiny models the difference can be noise, so the ordering is
asserted here and not in the tests. Ratios are the result; absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path


def latest_ablation(output_dir: Path, name: str) -> Path:
    found = sorted(output_dir.glob(f"{name}-ablation-*"))
    if not found:
        raise SystemExit(f"no {name}-ablation-* in {output_dir}")
    return found[-1]


def read_rows(ablation: Path) -> dict[str, dict]:
    rows = {r["setting"]: r for r in csv.DictReader((ablation / "ablation.csv").open())}
    return {k.removeprefix("strategy.name="): v for k, v in rows.items() if k.startswith("strategy.name=")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ablation", type=Path, help="an existing ablation directory with ablation.csv")
    ap.add_argument("--config", type=Path, help="run the ablation first, on this config")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="dotted overrides for the ablation")
    args = ap.parse_args()
    if args.config is not None:
        cmd = [sys.executable, "-m", "tailor.cli", "ablate", str(args.config), *args.overrides,
               "--vary", "strategy.name=full,head,lora", "--seeds", str(args.seeds)]
        subprocess.run(cmd, check=True)
        from tailor.config import load_config

        cfg = load_config(args.config, args.overrides)
        args.ablation = latest_ablation(Path(cfg.output_dir), cfg.name)
    if args.ablation is None:
        raise SystemExit("give an ablation directory or --config")
    rows = read_rows(args.ablation)
    full = float(rows["full"]["peak_memory_mb_mean"])
    print(f"{'strategy':<10} {'trainable':>12} {'peak MB':>10} {'vs full':>8}")
    for name, r in rows.items():
        peak = float(r["peak_memory_mb_mean"])
        print(f"{name:<10} {int(float(r['trainable_mean'])):>12,} {peak:>10.0f} {peak / full:>8.2f}")
    for name in ("head", "lora"):
        if name in rows:
            assert float(rows[name]["peak_memory_mb_mean"]) < full, f"{name} used no less memory than full"
    print("ok: head and lora peak below full")


if __name__ == "__main__":
    main()
