"""The machine: what it is, how busy it is (load average, other processes' CPU), peak memory, bf16 matmul peak."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch

QUIET_LOAD = 0.5  # 1-minute load average above this before a side: its figures are marked NOISY
QUIET_FOREIGN = (
    0.25  # other processes using more than this many cores on average during a side: NOISY
)
PACKAGES = (
    "tailor",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "tokenizers",
    "numpy",
)


def reset_peak_memory() -> None:
    """Start a new peak: the GPU allocator's, or on Linux the resident set's high-water mark (VmHWM)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5 resets VmHWM to the current resident set
    except OSError:
        pass


def peak_memory_mb() -> float:
    """Peak since the last reset: GPU allocator peak, else VmHWM of this process (MB)."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def machine_info() -> dict:
    """CPU model, cores, bf16 support, memory, GPU; what the figures were measured on."""
    cpu = platform.processor() or "?"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("?", "x86_64", ""):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem = next(
        (
            int(x.split()[1]) // 1024
            for x in _read("/proc/meminfo").splitlines()
            if x.startswith("MemTotal")
        ),
        0,
    )
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "bf16_instructions": [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()],
        "memory_mb": mem,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions(repo: Path) -> dict:
    """Package versions, Python, and the repository's commit (with '+dirty' when it has uncommitted changes)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
        out["commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        out["commit"] = "?"
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_jiffies() -> tuple[int, int]:
    """Busy (user, nice, system, irq, softirq) and steal jiffies of the whole machine, from /proc/stat."""
    text = _read("/proc/stat")
    fields = [int(x) for x in text.splitlines()[0].split()[1:]] if text else []
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


@dataclass
class Busy:
    """How busy the machine was around one side: load averages, and other processes' CPU use while it ran."""

    load1_before: float
    load1_after: float = 0.0
    foreign_cores: float = (
        0.0  # cores used on average by processes other than this suite, during the side
    )
    steal: float = 0.0  # fraction of the wall time the hypervisor gave our CPUs to someone else
    wall_s: float = 0.0
    noisy: str = ""  # why the figures are not to be trusted ("" = quiet)

    def to_json(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class BusyMeter:
    """Start before a side's child process, stop after it was joined: CPU time not spent by this process or its
    children (os.times counts children once waited for) is other people's."""

    def __init__(self) -> None:
        self.busy = Busy(load1_before=os.getloadavg()[0])
        self.t0 = time.monotonic()
        self.jiffies0 = _cpu_jiffies()
        self.own0 = _own_cpu()

    def stop(self) -> Busy:
        wall = max(time.monotonic() - self.t0, 1e-9)
        (busy1, steal1), (busy0, steal0) = _cpu_jiffies(), self.jiffies0
        tick = os.sysconf("SC_CLK_TCK")
        foreign = (busy1 - busy0) / tick - (_own_cpu() - self.own0)
        b = self.busy
        b.load1_after, b.wall_s = os.getloadavg()[0], wall
        b.foreign_cores = max(foreign, 0.0) / wall
        b.steal = (steal1 - steal0) / tick / wall / max(os.cpu_count() or 1, 1)
        why = [f"1-min load {b.load1_before:.2f} before"] if b.load1_before > QUIET_LOAD else []
        why += (
            [f"others used {b.foreign_cores:.2f} cores"] if b.foreign_cores > QUIET_FOREIGN else []
        )
        b.noisy = "; ".join(why)
        return b


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_until_quiet(max_seconds: float, say) -> float:
    """Wait (at most max_seconds) for the 1-minute load average to fall below QUIET_LOAD; returns it."""
    deadline = time.monotonic() + max_seconds
    load = os.getloadavg()[0]
    if load > QUIET_LOAD and max_seconds > 0:
        say(
            f"  waiting for the machine to settle (1-min load {load:.2f}; at most {max_seconds:.0f} s) ..."
        )
    while load > QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


def matmul_peak(spec: dict) -> dict:
    """bf16 matmul throughput with torch's default threads: large squares (the peak) and the model's own shapes.

    Child process body. Each shape is run for about spec['seconds'] after two warm-up products; the best
    repetition counts. FLOPs of an (m x k) @ (k x n) product: 2 m k n.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    shapes = {f"square {n}": (n, n, n) for n in spec["sizes"]}
    hidden, inner, vocab, tokens = spec["hidden"], spec["inner"], spec["vocab"], spec["tokens"]
    shapes |= {
        f"MLP up ({tokens}x{hidden} @ {hidden}x{inner})": (tokens, hidden, inner),
        f"LM head ({tokens}x{hidden} @ {hidden}x{vocab})": (tokens, hidden, vocab),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < spec["seconds"]:
            t = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        out[name] = round(2 * m * k * n / best / 1e9, 1)  # GFLOP/s
    peak = max(v for k, v in out.items() if k.startswith("square"))
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "gflops": out,
        "peak_gflops": peak,
    }


def model_params(hf_dir: str) -> dict:
    """Parameter counts from the config alone (meta device): total, embedding, LM head, body (the rest)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(hf_dir))
    total = sum(p.numel() for p in model.parameters())  # tied weights once
    emb = model.get_input_embeddings().weight.numel()
    return {
        "total": total,
        "embedding": emb,
        "head": model.get_output_embeddings().weight.numel(),
        "body": total - emb,
        "tied": model.get_output_embeddings().weight is model.get_input_embeddings().weight,
    }
