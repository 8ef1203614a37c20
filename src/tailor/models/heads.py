"""Task layers on top of a causal-LM backbone, and TailorModel = backbone + named heads."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


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

    @property
    def hidden_size(self) -> int:
        return self.backbone.get_input_embeddings().weight.shape[1]

    def hidden(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Last layer hidden states, (B, T, C)."""
        out = transformer_of(self.backbone)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    def pooled(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Hidden state of each row's last real token (right padding), (B, C)."""
        h = self.hidden(input_ids, attention_mask)
        last = attention_mask.sum(1).long() - 1
        return h[torch.arange(h.shape[0], device=h.device), last]

    def logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Next-token logits, (B, T, V)."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

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
