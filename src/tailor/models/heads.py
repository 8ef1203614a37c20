"""Task layers on top of a causal-LM backbone, and TailorModel = backbone + named heads."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from tailor.data.batching import IGNORE

# Model types whose logits are exactly lm_head(last hidden state): their loss can be computed from the
# hidden states at the trained positions only. Others (soft-capped or scaled logits) take the full logits.
PLAIN_LM_HEAD = {"gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox", "phi3", "starcoder2", "stablelm", "gptj",
                 "olmo", "olmo2", "smollm3"}
# On a CPU, below this many tokens per row the plain ("math") attention kernel is faster than the flash one,
# forward and backward: measured on SmolLM2-135M's shapes (9 heads of 64), 2 cores, bf16: 2.8x at 24 tokens,
# 1.9x at 64, 0.9x at 128, 0.4x at 512 (benchmarks/attention_kernels.py).
SHORT_ATTENTION = 96
# Rows of vocabulary logits made at once: 2^25 values (128 MB in fp32) whatever the vocabulary size.
LOGIT_BUDGET = 1 << 25


class ClassificationHead(nn.Module):
    """Pooled hidden state -> dense + tanh -> logits (n_out = classes, or 1 for regression)."""

    def __init__(self, hidden: int, n_out: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, pooled: Tensor) -> Tensor:  # (B, C) -> (B, n_out)
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out(self.dropout(x))


class SpanHead(nn.Module):
    """Per-token start/end logits for extractive question answering."""

    def __init__(self, hidden: int):
        super().__init__()
        self.out = nn.Linear(hidden, 2)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:  # (B, T, C) -> 2 x (B, T)
        start, end = self.out(hidden).unbind(-1)
        return start, end


HEADS = {"classification": ClassificationHead, "span": SpanHead}


def transformer_of(backbone: nn.Module) -> nn.Module:
    """The decoder stack (no LM head) of a transformers model, also when wrapped by peft."""
    inner = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return inner.base_model


class TailorModel(nn.Module):
    """A causal-LM backbone plus task layers by name; one forward helper per use."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module] | None = None):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads or {})
        self.recomputes = False  # gradient checkpointing is on (train.gradient_checkpointing)

    @property
    def hidden_size(self) -> int:
        return self.backbone.get_input_embeddings().weight.shape[1]

    def hidden(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None = None) -> Tensor:
        """Last layer hidden states, (B, T, C). With `position_ids` (packed documents, batching.packed_inputs)
        the attention mask is built from them (block-diagonal); right padding needs no mask under causality."""
        inputs = {"position_ids": position_ids} if position_ids is not None else {"attention_mask": attention_mask}
        with attention_kernel(input_ids, not self.recomputes):
            return transformer_of(self.backbone)(input_ids=input_ids, use_cache=False, **inputs).last_hidden_state

    def pooled(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Hidden state of each row's last real token (right padding), (B, C)."""
        h = self.hidden(input_ids, attention_mask)
        last = attention_mask.sum(1).long() - 1
        return h[torch.arange(h.shape[0], device=h.device), last]

    def logits(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None = None) -> Tensor:
        """Next-token logits, (B, T, V)."""
        inputs = {"position_ids": position_ids} if position_ids is not None else {"attention_mask": attention_mask}
        with attention_kernel(input_ids, not self.recomputes):
            return self.backbone(input_ids=input_ids, use_cache=False, **inputs).logits

    def next_token_nll(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None,
                       position_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Summed next-token negative log-likelihood over the trained positions, and their count.

        Trained positions are those whose label is not IGNORE (all real tokens without `labels`). The
        vocabulary logits are made only there, and a chunk of rows at a time, recomputed in the backward
        pass: the (B, T, V) fp32 tensor of a 49k vocabulary never exists.
        """
        targets = (labels if labels is not None else input_ids.masked_fill(attention_mask == 0, IGNORE))[:, 1:]
        head = self.backbone.get_output_embeddings()
        if head is None or getattr(self.backbone.config, "model_type", None) not in PLAIN_LM_HEAD:
            logits = self.logits(input_ids, attention_mask, position_ids)[:, :-1].float()  # (B, T-1, V)
            nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="sum")
            return nll, (targets != IGNORE).sum()
        keep = targets != IGNORE  # (B, T-1)
        hidden = self.hidden(input_ids, attention_mask, position_ids)[:, :-1][keep]  # (N, C)
        return chunked_nll(hidden, head, targets[keep]), keep.sum()

    def for_task(self, name: str) -> TailorModel:
        """The model as one sub-task of a multitask run sees it: the same backbone, only that task's heads."""
        own = self.heads[name] if name in self.heads else {}
        return TailorModel(self.backbone, dict(own.items()))

    def head_state(self) -> dict[str, Tensor]:
        return {k: v.detach().contiguous() for k, v in self.heads.state_dict().items()}

    def save_heads(self, path) -> None:
        if len(self.heads):
            save_file(self.head_state(), str(path))

    def load_heads(self, path) -> None:
        self.heads.load_state_dict(load_file(str(path)))


def attention_kernel(input_ids: Tensor, allowed: bool = True) -> contextlib.AbstractContextManager:
    """The scaled-dot-product attention kernel for a batch: plain for short rows on a CPU, else torch's choice.

    Not `allowed` under gradient checkpointing: blocks recomputed in the backward pass (outside this context)
    must use the kernel their forward used.
    """
    if allowed and input_ids.device.type == "cpu" and input_ids.shape[-1] <= SHORT_ATTENTION:
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def chunked_nll(hidden: Tensor, head: nn.Module, targets: Tensor) -> Tensor:
    """sum of -log softmax(head(hidden))[target], (N, C) -> (); LOGIT_BUDGET values of logits at a time."""
    rows = max(1, LOGIT_BUDGET // max(head.weight.shape[0], 1))
    if len(targets) <= rows:
        return _nll(hidden, targets, head)
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, len(targets), rows):
        h, t = hidden[i : i + rows], targets[i : i + rows]
        # under autograd, keep only this chunk's inputs; its logits are made again in the backward pass
        part = checkpoint(_nll, h, t, head, use_reentrant=False) if torch.is_grad_enabled() else _nll(h, t, head)
        total = total + part
    return total


def _nll(hidden: Tensor, targets: Tensor, head: nn.Module) -> Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")
