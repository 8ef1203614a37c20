"""tailor against the Hugging Face Trainer and TRL on a real model (SmolLM2-135M-Instruct), side by side, one command.

    bash benchmarks/get_smollm2.sh                      # once: the model (98 MB GGUF)
    python benchmarks/real_model_suite.py               # every job, full size, on an otherwise idle machine
    python benchmarks/real_model_suite.py --quick       # a few steps per side: checks the harness, not a result
    python benchmarks/real_model_suite.py --jobs classification,generation --examples 500

Jobs (each side in a fresh spawned process of its own, one after the other, on the same data, batch size,
epochs, learning rate, seed, maximum length and precision: bf16 autocast where the CPU has it):
- classification: tailor (head, full) vs the Trainer's recipe (AutoModelForSequenceClassification +
  DataCollatorWithPadding) on the first N SST-2 sentences, each in the prompt 'Review: {text}\\nSentiment:';
  test accuracy on dev.tsv;
- chat: tailor (chat, loss on the reply) vs TRL's SFTTrainer with completion-only loss in three modes (default
  padding, packing=True, padding_free=True) on Alpaca (alpaca_2k); loss on 200 held-out replies;
- lm: tailor (lm, packing) vs the Trainer (DataCollatorForLanguageModeling on speeches, padded) vs TRL with
  packing, on tinyshakespeare; perplexity on the last 200 pieces of the text;
- generation: `tailor generate` and evaluation-time batched generation vs plain model.generate, greedy.
Per side: real (non-padding) tokens/s, seconds per step, peak memory (the process's peak resident set during
training, or the GPU allocator's peak), the task metric, tailor / other ratios, achieved FLOP/s as a fraction of
this machine's bf16 matmul peak (measured first), the load average before and after and other processes' CPU
use while it ran (NOISY when the machine was busy). Tables are printed and written to OUT/results.md and
OUT/results.json; each side's output goes to OUT/logs/. The data comes from ../shared/data and is never copied
into the repository. See docs/real-models.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from realbench import data, generation, hf_sides, report, scoring, tailor_sides
from realbench.machine import machine_info, matmul_peak, model_params, versions
from realbench.runner import run_side

REPO = Path(__file__).resolve().parents[1]
JOBS = ("classification", "chat", "lm", "generation")
# per job: training examples, held-out examples, batch size, max length (tokens)
SIZES = {
    "classification": {"examples": 2000, "held": None, "batch_size": 16, "max_length": 128},
    "chat": {"examples": None, "held": 200, "batch_size": 8, "max_length": 512},
    "lm": {"examples": 2000, "held": 200, "batch_size": 8, "max_length": 256},
    "generation": {"prompts": 16, "max_new_tokens": 64, "gen_batch": 16},
}
QUICK = {
    "classification": {"examples": 48, "held": 32},
    "chat": {"examples": 24, "held": 8},
    "lm": {"examples": 64, "held": 8},
    "generation": {"prompts": 4, "max_new_tokens": 16, "gen_batch": 4},
}
# per training job: (side name, slug, child function, extra spec); chat and lm models are scored after training
SIDES = {
    "classification": [
        ("tailor", "tailor", tailor_sides.train_tailor, {}),
        ("HF Trainer", "trainer", hf_sides.train_trainer_classification, {}),
    ],
    "chat": [
        ("tailor", "tailor", tailor_sides.train_tailor, {}),
        ("TRL SFTTrainer (padding)", "trl-padding", hf_sides.train_trl, {"mode": "padding"}),
        ("TRL SFTTrainer packing", "trl-packing", hf_sides.train_trl, {"mode": "packing"}),
        (
            "TRL SFTTrainer padding_free",
            "trl-padding-free",
            hf_sides.train_trl,
            {"mode": "padding_free"},
        ),
    ],
    "lm": [
        ("tailor", "tailor", tailor_sides.train_tailor, {}),
        ("HF Trainer (padded)", "trainer", hf_sides.train_trainer_lm, {}),
        ("TRL SFTTrainer packing", "trl-packing", hf_sides.train_trl, {"mode": "packing"}),
    ],
}
SCORE = {"chat": scoring.score_replies, "lm": scoring.score_text}
GEN_SIDES = [
    ("tailor generate (one prompt at a time)", "tailor_single"),
    ("plain model.generate (one at a time)", "plain_single"),
    ("tailor eval-time generate_ids (batched)", "tailor_batch"),
    ("plain model.generate (batched)", "plain_batch"),
]


class Suite:
    """Settings, paths and results of one suite run."""

    def __init__(self, args: argparse.Namespace):
        from tailor.config import ModelConfig, TrainConfig
        from tailor.models.load import load_tokenizer_for
        from tailor.train.loop import precision_of

        self.args, self.out, self.work = args, args.out, args.out / "work"
        for d in (self.out / "logs", self.work / "models"):
            d.mkdir(parents=True, exist_ok=True)
        # converts the GGUF once into a Hugging Face directory (cached): the other sides' model
        self.tok, src = load_tokenizer_for(ModelConfig(path=str(args.model)))
        self.hf_dir = src.location
        self.precision = "bf16" if precision_of(TrainConfig()) == "bf16" else "fp32"
        self.params = model_params(self.hf_dir)
        self.settle = args.settle if args.settle is not None else (0 if args.quick else 120)
        self.results: dict = {
            "machine": machine_info(),
            "versions": versions(REPO),
            "params": self.params,
            "settings": {k: str(v) for k, v in vars(args).items()} | {"precision": self.precision},
            "jobs": {},
        }
        self.markdown: list[str] = []
        self.peak: float | None = None

    def size(self, job: str, key: str):
        value = (QUICK[job] if self.args.quick else {}).get(key, SIZES[job].get(key))
        override = {"examples": self.args.examples, "batch_size": self.args.batch_size}.get(key)
        return override if override is not None else value

    def spec(self, job: str, kind: str, slug: str, files: dict, extra: dict) -> dict:
        a = self.args
        return {
            "job": job,
            "kind": kind,
            "slug": slug,
            "work": str(self.work),
            "hf_dir": self.hf_dir,
            "gguf": str(a.model),
            "precision": self.precision,
            "seed": a.seed,
            "lr": a.lr,
            "epochs": a.epochs,
            "batch_size": self.size(job, "batch_size"),
            "max_length": SIZES[job].get("max_length"),
            "gradient_checkpointing": a.gradient_checkpointing,
            "model_out": str(self.work / "models" / f"{job}-{slug}"),
            **files,
            **extra,
        }

    def side(self, fn, spec: dict, label: str, timed: bool = True) -> dict:
        """One side in its own process; a timed side first waits for the machine to settle (--settle)."""
        say(f"  {label} ...")
        log = self.out / "logs" / f"{spec['job']}-{spec['slug']}.log"
        r = run_side(fn, spec, log, self.settle if timed else 0, say)
        say(
            f"    {'FAILED: ' + r['error'].strip().splitlines()[-1] if 'error' in r else 'done'} "
            f"(log {r['log']}; load {r['busy']['load1_before']:.2f}, others {r['busy']['foreign_cores']:.2f} cores)"
        )
        return r


def say(text: str) -> None:
    print(text, flush=True)


def job_files(s: Suite, job: str) -> dict:
    """Write the job's data files (train / test / held-out) and return their paths and counts."""
    a, held = s.args, s.size(job, "held")
    if job == "classification":
        return data.sst2(a.data, s.size(job, "examples"), held, s.work)
    if job == "chat" or job == "generation":
        n = s.size("chat", "examples") if job == "chat" else 0
        return data.alpaca(
            a.data,
            n,
            held if job == "chat" else s.size("chat", "held"),
            SIZES["chat"]["max_length"],
            s.tok,
            a.seed,
            s.work,
        )
    return data.shakespeare(
        a.data, s.size(job, "examples"), held, SIZES[job]["max_length"], s.tok, s.work
    )


def training_job(s: Suite, job: str) -> None:
    files = job_files(s, job)
    say(
        f"\n== {job}: {files['n_train']} training examples; data {', '.join(f'{k} {v}' for k, v in files.items() if k.startswith(('n_', 'left')))}"
    )
    rows = []
    for name, slug, fn, extra in SIDES[job]:
        spec = s.spec(job, job, slug, files, extra)
        r = s.side(fn, spec, name)
        if job in SCORE and "error" not in r:
            score = s.side(
                SCORE[job],
                spec | {"model_dir": r["model_dir"], "slug": f"{slug}-score"},
                f"{name}: scoring",
                timed=False,
            )
            r["metric"], r["scoring"] = score.get("metric", {"scoring failed": float("nan")}), score
            if not s.args.keep_models:
                shutil.rmtree(r["model_dir"], ignore_errors=True)
        if not s.args.keep_models:
            shutil.rmtree(s.work / "runs", ignore_errors=True)
        rows.append(report.training_row(name, job, r, s.params, s.peak))
    if job in SCORE:  # the pre-trained model, scored the same way: what training changed
        base = s.side(
            SCORE[job],
            s.spec(job, job, "pretrained-score", files, {"model_dir": s.hf_dir}),
            "pre-trained model: scoring",
            timed=False,
        )
        files["pretrained_metric"] = base.get("metric")
    report.add_ratios(rows)
    lines = report.training_table(rows)
    notes = report.work_check(rows) + report.summary_lines(rows)
    if job in SCORE:
        notes.append(
            f"pre-trained model, scored the same way: {report.metric_text(base.get('metric', {}))}"
        )
    notes += report.JOB_NOTES[job]
    say("\n".join(["", *lines, "", *notes]))
    s.results["jobs"][job] = {"data": files, "rows": rows}
    facts = ", ".join(f"{k} {v}" for k, v in files.items() if not str(v).startswith("/"))
    s.markdown += [
        f"## {job}",
        "",
        f"Data: {facts}",
        "",
        *lines,
        "",
        *[f"- {x}" for x in notes],
        "",
    ]


def generation_job(s: Suite) -> None:
    files = job_files(s, "generation")
    extra = {k: s.size("generation", k) for k in ("prompts", "max_new_tokens", "gen_batch")}
    say(
        f"\n== generation: {extra['prompts']} held-out chat prompts, {extra['max_new_tokens']} new tokens at most, greedy, fp32"
    )
    raw = {
        mode: s.side(
            generation.generate_side,
            s.spec("generation", "generation", mode, files, extra | {"mode": mode}),
            name,
        )
        for name, mode in GEN_SIDES
    }
    rows = []
    for name, mode in GEN_SIDES:
        r, plain = raw[mode], raw["plain_" + mode.split("_")[1]]
        row = {"side": name, **r}
        if "error" not in r and "error" not in plain and mode.startswith("tailor"):
            row["speed_ratio"] = r["tokens_per_s"] / plain["tokens_per_s"]
            same = sum(a == b for a, b in zip(r["outputs"], plain["outputs"], strict=True))
            row["same_as_plain"] = f"{same} of {len(r['outputs'])}"
        rows.append(row)
    lines = report.generation_table(rows)
    say("\n".join(["", *lines]))
    s.results["jobs"]["generation"] = {"data": files | extra, "rows": rows}
    s.markdown += ["## generation", "", *lines, ""]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--jobs", default=",".join(JOBS), help=f"comma-separated subset of {', '.join(JOBS)}"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a few steps per side: checks the harness, not a result",
    )
    ap.add_argument(
        "--examples",
        type=int,
        help="training examples of every job (default per job: 2000 SST-2 "
        "sentences, every Alpaca record not held out, 2000 Shakespeare pieces)",
    )
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument(
        "--batch-size", type=int, help="default per job: classification 16, chat 8, lm 8"
    )
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gradient-checkpointing", action="store_true", help="on every side (TRL's own default)"
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=Path("~/.cache/tailor/models/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser(),
    )
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/real-model-suite"))
    ap.add_argument(
        "--settle",
        type=float,
        help="seconds to wait at most before each side for the 1-min load "
        "average to fall below 0.5 (default 120; 0 with --quick)",
    )
    ap.add_argument(
        "--keep-models",
        action="store_true",
        help="keep each side's trained model in OUT/work/models",
    )
    args = ap.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown or not jobs:
        ap.error(f"--jobs: {', '.join(unknown) or 'none given'}; choose from {', '.join(JOBS)}")
    if not args.model.is_file():
        ap.error(
            f"--model {args.model}: no such file; fetch it once with: bash benchmarks/get_smollm2.sh"
        )
    missing = [
        p
        for p in ("sst2/train.tsv", "alpaca_2k/alpaca_small.json", "tinyshakespeare/input.txt")
        if not (args.data / p).is_file()
    ]
    if missing:
        ap.error(f"--data {args.data}: missing {', '.join(missing)}")
    args.jobs = jobs
    return args


def main() -> None:
    os.environ.setdefault(
        "HF_HUB_OFFLINE", "1"
    )  # every file is local; no side should wait on the network
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = parse_args()
    s = Suite(args)
    say(
        f"machine: {s.results['machine']['cpu']}, {s.results['machine']['cores']} cores; precision {s.precision}; "
        f"output in {args.out}"
    )
    sizes = [512, 1024] if args.quick else [2048, 4096]
    peak = s.side(
        matmul_peak,
        {
            "job": "machine",
            "slug": "matmul-peak",
            "precision": s.precision,
            "sizes": sizes,
            "seconds": 0.3 if args.quick else 3.0,
            "hidden": 576,
            "inner": 1536,
            "vocab": 49152,
            "tokens": 2048,
        },
        "bf16 matmul peak",
    )
    s.results["matmul"] = peak
    s.peak = peak.get("peak_gflops")
    say("    GFLOP/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in peak.get("gflops", {}).items()))
    for job in args.jobs:
        if job == "generation":
            generation_job(s)
        else:
            training_job(s, job)
        report.write(args.out, s.results, report.header(s.results, s.precision) + s.markdown)
    if not args.keep_models:
        shutil.rmtree(s.work, ignore_errors=True)
    say(f"\nwritten: {args.out / 'results.md'}, {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
