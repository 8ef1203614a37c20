"""Encoded examples in flat arrays, length-bucketed batches, packing, and collation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

IGNORE = -100
# Batches are padded to a multiple of this many tokens (never past the data's longest example). With exact
# widths every new batch length is a new tensor shape, and bf16 on CPU keeps kernels and buffers per shape:
# on the sentiment demo the process grew from 780 MB to 1,345 MB over 60 steps and kept what it took;
# with multiples of 8 it stays near 750 MB. The cost is at most 7 padding positions per row (3 up to 64 tokens:
# on SST-2 sentences, 18 tokens on average, 10% of the positions are padding instead of 19%).
WIDTH_MULTIPLE = 8


@dataclass
class Encoded:
    """A split after tokenisation: all token ids in one flat array, sliced by offsets.

    `labels` (same layout as `ids`) holds per-token targets with IGNORE where no loss is
    taken; `fields` holds one value per example (class label, score, span positions...).
    Memory is ~8 bytes per token whatever the number of examples.
    """

    ids: np.ndarray  # (N_tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64
    labels: np.ndarray | None = None  # (N_tokens,) int32
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    index: np.ndarray | None = None  # (n,) source record position, for per-example reports

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def longest(self) -> int:
        return int(self.lengths.max()) if len(self) else 0

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], None if self.labels is None else self.labels[a:b]

    def subset(self, rows: np.ndarray) -> Encoded:
        parts = [self.example(int(i)) for i in rows]
        return from_examples(
            [{"input_ids": p[0], **({"labels": p[1]} if p[1] is not None else {}),
              **{k: v[i] for k, v in self.fields.items()}} for p, i in zip(parts, rows, strict=True)],
            index=None if self.index is None else self.index[rows],
        )


def from_examples(examples: Iterable[dict], index: Iterable[int] | None = None) -> Encoded:
    """Build an Encoded from feature dicts: input_ids, optional labels, any scalar fields."""
    ids: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    fields: dict[str, list] = {}
    for ex in examples:
        ids.append(np.asarray(ex["input_ids"], dtype=np.int32))
        if "labels" in ex:
            labels.append(np.asarray(ex["labels"], dtype=np.int32))
        for k, v in ex.items():
            if k not in ("input_ids", "labels"):
                fields.setdefault(k, []).append(v)
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    flat_labels = np.concatenate(labels) if labels and len(labels) == len(ids) else None
    return Encoded(
        ids=flat, offsets=offsets, labels=flat_labels,
        fields={k: np.asarray(v) for k, v in fields.items()},
        index=None if index is None else np.asarray(list(index), dtype=np.int64),
    )


def pack(docs: Iterable[np.ndarray], block: int, eos: int) -> Encoded:
    """Concatenate documents (each followed by eos) and cut into full blocks of `block` tokens.

    The last partial block is kept only if it is at least half full, so no padding is needed
    for all but possibly one row. Each row's `separator` field is eos: `packed_inputs` restarts
    positions and attention after it, so no document sees another.
    """
    stream = [np.append(np.asarray(d, dtype=np.int32), np.int32(eos)) for d in docs]
    flat = np.concatenate(stream) if stream else np.zeros(0, np.int32)
    n_full = len(flat) // block
    rest = len(flat) - n_full * block
    cut = n_full * block + (rest if rest >= block // 2 else 0)
    flat = flat[:cut]
    offsets = np.append(np.arange(0, n_full + 1, dtype=np.int64) * block, [cut] if cut > n_full * block else [])
    offsets = offsets.astype(np.int64)
    return Encoded(ids=flat, offsets=offsets, fields={"separator": np.full(len(offsets) - 1, eos, np.int64)})


def packed_inputs(input_ids: torch.Tensor, separator: torch.Tensor, labels: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids that restart after each separator (and at each row's start), and labels that do not
    train a document's first token on the one before it: packed documents stay apart.

    input_ids (B, T), separator (B,) -> position_ids (B, T), labels (B, T). Given position ids and no
    attention mask, transformers builds a block-diagonal causal mask from them.
    """
    idx = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)  # (B, T)
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 1:] = input_ids[:, :-1] == separator[:, None]  # the first token of each later document
    last_start = torch.cummax(torch.where(starts, idx, 0), dim=1).values
    labels = (input_ids if labels is None else labels).masked_fill(starts, IGNORE)
    return idx - last_start, labels


def bucketed_order(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, window: int = 64,
                   stream: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Batches of similar length: shuffle, sort inside windows of `window` batches, shuffle batches.

    Padding waste falls to a few percent while the order stays random across the epoch. `stream`
    gives independent orders for the same seed and epoch (multitask: one per task and pass).
    """
    rng = np.random.default_rng([seed, epoch, *stream])
    order = rng.permutation(len(lengths))
    mega = batch_size * window
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def sequential_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: sorted by length (little padding), every example exactly once."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded_width(data: Encoded, lengths: np.ndarray) -> int:
    """A batch's width: its longest row rounded up to WIDTH_MULTIPLE (half that up to 64 tokens, where a
    rounding of 8 would waste a fifth of short sentences), at most the data's longest example."""
    longest = int(lengths.max())
    step = WIDTH_MULTIPLE // 2 if longest <= 64 else WIDTH_MULTIPLE
    return min(-(-longest // step) * step, data.longest)


def collate(data: Encoded, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors for the given rows: input_ids, attention_mask, labels?, fields, row."""
    lengths = data.lengths[rows]
    width = padded_width(data, lengths)
    n = len(rows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    labels = np.full((n, width), IGNORE, dtype=np.int64) if data.labels is not None else None
    for j, i in enumerate(rows):
        a, b = data.offsets[i], data.offsets[i + 1]
        ids[j, : b - a] = data.ids[a:b]
        mask[j, : b - a] = 1
        if labels is not None:
            labels[j, : b - a] = data.labels[a:b]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if labels is not None:
        batch["labels"] = torch.from_numpy(labels)
    for k, v in data.fields.items():
        col = v[rows]
        if col.dtype.kind in "iufb":
            batch[k] = torch.from_numpy(np.ascontiguousarray(col))
    batch["row"] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    return batch


def iterate(data: Encoded, order: list[np.ndarray], pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    for rows in order:
        yield collate(data, rows, pad_id)


def padding_waste(data: Encoded, order: list[np.ndarray]) -> float:
    """Fraction of positions in the given batches that are padding (widths as collate pads them)."""
    real = total = 0
    for rows in order:
        lengths = data.lengths[rows]
        real += int(lengths.sum())
        total += padded_width(data, lengths) * len(rows)
    return 1 - real / total if total else 0.0
