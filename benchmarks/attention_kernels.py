"""Scaled-dot-product attention on this CPU: the flash kernel against the plain ("math") one, forward + backward.

Shapes of SmolLM2-135M (9 heads of 64) in bf16, the batch shrinking as rows grow (about 1k tokens a batch).
tailor uses the plain kernel for rows up to models.heads.SHORT_ATTENTION tokens, where it is faster.

    python benchmarks/attention_kernels.py
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def seconds(backend: SDPBackend, batch: int, heads: int, length: int, dim: int, reps: int = 5) -> float:
    q, k, v = (torch.randn(batch, heads, length, dim, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))

    def once() -> None:
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()

    once()
    start = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - start) / reps


def main() -> None:
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    for length in (24, 48, 64, 96, 128, 256, 512):
        batch = max(1, 1024 // max(length, 64))
        flash = seconds(SDPBackend.FLASH_ATTENTION, batch, 9, length, 64)
        plain = seconds(SDPBackend.MATH, batch, 9, length, 64)
        print(f"{batch:>3} x {length:>3} tokens: flash {flash * 1e3:7.1f} ms  plain {plain * 1e3:7.1f} ms  "
              f"plain is {flash / plain:.2f}x as fast")


if __name__ == "__main__":
    main()
