"""Keep the libraries' own chatter out of tailor's output: progress bars and warnings that tell a user nothing.

tailor prints what it does itself (loading, strategy, progress, warnings about the data). transformers'
weight-loading bars, its "Token indices sequence length is longer than ..." notice (tailor truncates
on purpose and reports it in the data check), FutureWarnings and peft's notes on layer types are noise
there. Errors, and warnings from tailor itself, are untouched. Set TAILOR_VERBOSE=1 to see everything.
"""

from __future__ import annotations

import os
import warnings

NOISE = (
    r".*fan_in_fan_out.*",  # peft, for GPT-2's Conv1D layers: it handles them itself
    r".*torch_dtype.*is deprecated.*",
    r".*`is_gradient_checkpointing` is deprecated.*",
)


def silence_libraries() -> None:
    """Call before transformers, peft or tqdm are imported (the CLI does, at start)."""
    if os.environ.get("TAILOR_VERBOSE"):
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers sets up its logger
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # bars made with tqdm directly (GGUF dequantization)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
