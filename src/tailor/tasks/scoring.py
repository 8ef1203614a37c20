"""Prompt templates and label-likelihood scoring: how a causal LM classifies with words instead of a head."""

from __future__ import annotations

import inspect
import string
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tailor.config import ConfigError
from tailor.data.batching import IGNORE
from tailor.models.heads import attention_kernel

FIELDS = ("text", "text_pair")


def task_error(key: str, message: str) -> ConfigError:
    """A mistake in the task settings, reported like any config problem."""
    return ConfigError("task settings", [f"{key}: {message}"])


@dataclass
class Prompt:
    """A template such as 'Text: {text}\\nLabel:' cut into literal text and the fields between.

    Each field is tokenised on its own, so a long text is truncated while the template's end
    (the cue the label follows) is always kept. Spaces just before a field travel with the field's
    text, so 'Text: {text}' tokenises as 'Text:' + ' great phone', as a whole string would.
    """

    template: str
    parts: list[tuple[str, str | None]]  # (literal, field after it or None)

    @classmethod
    def parse(cls, template: str) -> Prompt:
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as e:
            raise task_error("task.prompt", f"{e} in {template!r} (write {{text}} for the text)") from None
        for literal, name, _, _ in parsed:
            if name is not None and name not in FIELDS:
                raise task_error("task.prompt", f"unknown placeholder {{{name}}} in {template!r}; "
                                                "use {text} and, for pairs, {text_pair}")
            parts.append((literal, name))
        if not any(name == "text" for _, name in parts):
            raise task_error("task.prompt", f"{template!r} has no {{text}}; the record's text goes there")
        return cls(template, parts)

    @property
    def fields(self) -> list[str]:
        return [name for _, name in self.parts if name is not None]

    def encode_many(self, records: list[dict], tok: Any, budget: int) -> tuple[list[list[int]], list[int]]:
        """Token ids of each filled-in prompt, fields truncated (longest first) to fit `budget`; full lengths."""
        literals: list[list[int]] = []
        fields: list[list[list[int]] | None] = []  # per part: each record's tokens of the field after the literal
        for literal, name in self.parts:
            lead = ""
            if name is not None:  # spaces before a field go with the field's text
                stripped = literal.rstrip(" ")
                lead, literal = literal[len(stripped):], stripped
            literals.append(list(tok(literal, add_special_tokens=False)["input_ids"]) if literal else [])
            texts = [lead + str(r.get(name) or "") for r in records] if name is not None else None
            fields.append(tok(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else None)
        fixed = sum(len(x) for x in literals)
        columns = {i: f for i, f in enumerate(fields) if f is not None}
        present = list(columns)
        out, full = [], []
        for j in range(len(records)):
            lengths = [len(columns[i][j]) for i in present]
            keep = dict(zip(present, fit_lengths(lengths, max(budget - fixed, 1)), strict=True))
            seq: list[int] = []
            for i, literal_ids in enumerate(literals):
                seq += literal_ids
                if i in keep:
                    seq += columns[i][j][: keep[i]]
            out.append(seq)
            full.append(fixed + sum(lengths))
        return out, full


def fit_lengths(lengths: list[int], budget: int) -> list[int]:
    """Longest-first truncation: the shortest fields stay whole, the longest share what is left."""
    if sum(lengths) <= budget:
        return list(lengths)
    keep = [0] * len(lengths)
    left = budget
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for n, i in enumerate(order):
        keep[i] = min(lengths[i], left // (len(order) - n))
        left -= keep[i]
    return keep


def _forward_accepts_keep(backbone: Any) -> bool:
    inner = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def logits_at(model: Any, input_ids: Tensor, attention_mask: Tensor, positions: Tensor) -> Tensor:
    """Next-token logits only at `positions` (B, L) of each row, (B, L, V): no (B, T, V) tensor when avoidable."""
    backbone = model.backbone
    if _forward_accepts_keep(backbone):
        with attention_kernel(input_ids, not model.recomputes):
            out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=positions)
        if out.logits.shape[:2] == positions.shape:
            return out.logits
    logits = model.logits(input_ids, attention_mask)  # (B, T, V)
    return torch.take_along_dim(logits, positions[..., None], dim=1)


def with_continuation(ids: Tensor, prompt_length: Tensor, cont: Tensor, pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Each row's prompt (its first prompt_length tokens) followed by the same continuation, right-padded.

    ids (B, T), prompt_length (B,), cont (L,) -> ids (B, max(prompt_length) + L), attention mask.
    """
    width = int(prompt_length.max()) + len(cont)
    base = torch.full((ids.shape[0], width), pad_id, dtype=ids.dtype, device=ids.device)
    n = min(width, ids.shape[1])
    base[:, :n] = ids[:, :n]
    rel = torch.arange(width, device=ids.device)[None, :] - prompt_length[:, None]  # (B, W)
    inside = (rel >= 0) & (rel < len(cont))
    out = torch.where(rel < 0, base, torch.where(inside, cont[rel.clamp(0, len(cont) - 1)], pad_id))
    return out, (rel < len(cont)).long()


def prepend(prefix: Tensor, ids: Tensor, prompt_length: Tensor, max_length: int) -> tuple[Tensor, Tensor]:
    """A shared prefix (few-shot demonstrations) before every row, cut from its left to fit max_length."""
    room = max_length - ids.shape[1]
    if room <= 0 or not len(prefix):
        return ids, prompt_length
    prefix = prefix[-room:]
    rows = prefix[None, :].expand(ids.shape[0], -1)
    return torch.cat([rows, ids], dim=1), prompt_length + len(prefix)


def score_continuations(model: Any, ids: Tensor, prompt_length: Tensor, candidates: list[Tensor],
                        pad_id: int = 0) -> Tensor:
    """Summed log-likelihood of each candidate continuation after each row's prompt, (B, K).

    All candidates of one token: one forward of the prompts. Otherwise one batched forward per candidate.
    """
    if all(len(c) == 1 for c in candidates):
        width = int(prompt_length.max())
        mask = (torch.arange(width, device=ids.device)[None, :] < prompt_length[:, None]).long()
        logits = logits_at(model, ids[:, :width], mask, (prompt_length - 1)[:, None])  # (B, 1, V)
        logp = F.log_softmax(logits[:, 0].float(), dim=-1)
        return logp[:, torch.stack([c[0] for c in candidates])]
    scores = []
    for cont in candidates:
        seq, mask = with_continuation(ids, prompt_length, cont, pad_id)
        positions = prompt_length[:, None] - 1 + torch.arange(len(cont), device=ids.device)[None, :]  # (B, L)
        logp = F.log_softmax(logits_at(model, seq, mask, positions).float(), dim=-1)  # (B, L, V)
        scores.append(logp.gather(-1, cont[None, :, None].expand(ids.shape[0], -1, 1)).squeeze(-1).sum(-1))
    return torch.stack(scores, dim=1)


def continuation_loss(model: Any, batch: dict[str, Tensor], weights: Tensor | None, smoothing: float) -> Tensor:
    """Cross-entropy on the label tokens only (labels are IGNORE on the prompt), optionally class-weighted."""
    labels, plen = batch["labels"], batch["prompt_length"]
    longest = int(((labels != IGNORE).sum(1)).max())
    positions = (plen[:, None] - 1 + torch.arange(longest, device=labels.device)[None, :]).clamp(max=labels.shape[1] - 2)
    targets = torch.take_along_dim(labels, positions + 1, dim=1)  # (B, L)
    inside = torch.arange(longest, device=labels.device)[None, :] < (labels != IGNORE).sum(1)[:, None]
    targets = targets.masked_fill(~inside, IGNORE)
    logits = logits_at(model, batch["input_ids"], batch["attention_mask"], positions).float()  # (B, L, V)
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none",
                                label_smoothing=smoothing)  # (B, L)
    w = torch.ones(labels.shape[0], device=labels.device) if weights is None else weights[batch["label"]]
    counted = inside.float() * w[:, None]
    return (per_token * counted).sum() / counted.sum().clamp(min=1e-8)
