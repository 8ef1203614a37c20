"""Language modelling: continued pre-training / domain adaptation on plain text."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tailor.config import RunConfig, TaskConfig
from tailor.data.batching import IGNORE, Encoded, from_examples, pack, packed_inputs
from tailor.data.check import FieldSpec, Schema
from tailor.evaluate.metrics import perplexity

UNIT_BLOCKS = 8  # tailor's split of plain text deals out documents, or pieces of this many blocks of tokens


class LanguageModelling:
    type = "lm"

    def __init__(self, cfg: TaskConfig, run: RunConfig | None = None):
        self.name = cfg.name or "lm"
        self.packing = run.train.packing if run is not None else True

    def schema(self) -> Schema:
        return Schema(fields=[FieldSpec("text", "str")])

    def fit_labels(self, train_records: list[dict]) -> None:
        pass

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        ids = tok(record["text"], add_special_tokens=False)["input_ids"][: max_length - 1]
        return {"input_ids": [*ids, tok.eos_token_id]}

    def split_units(self, records: list[dict], tok: Any, max_length: int) -> list[dict]:
        """Documents longer than UNIT_BLOCKS blocks cut, at token boundaries, into pieces of that many tokens, so
        that tailor's split deals out tokens, not lines: one 5 MB line of text still gives validation and test."""
        unit = UNIT_BLOCKS * max_length
        out: list[dict] = []
        for r in records:
            text = r.get("text")
            if not isinstance(text, str) or len(text) <= unit:  # a cheap first test: text has more characters than tokens
                out.append(r)
                continue
            if getattr(tok, "is_fast", False):
                starts = [a for a, _ in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
            else:  # a slow tokenizer gives no offsets: pieces of `unit` characters instead
                starts = list(range(len(text)))
            cuts = [0, *starts[unit::unit], len(text)]
            out += [{**r, "text": text[a:b]} for a, b in zip(cuts, cuts[1:], strict=False) if text[a:b].strip()]
        return out

    def encode_split(self, records: list[dict], tok: Any, max_length: int) -> Encoded:
        """Tokenise in batches (the fast tokenizer's own threads), then pack into full blocks."""
        docs: list[np.ndarray] = []
        for i in range(0, len(records), 1000):
            texts = [r["text"] for r in records[i : i + 1000]]
            docs.extend(np.asarray(x, np.int32) for x in tok(texts, add_special_tokens=False)["input_ids"])
        if self.packing:
            return pack(docs, max_length, tok.eos_token_id)
        chunks = [np.append(d[i : i + max_length - 1], tok.eos_token_id) for d in docs for i in range(0, max(len(d), 1), max_length - 1)]
        return from_examples({"input_ids": c} for c in chunks)

    def build_heads(self, hidden_size: int) -> dict:
        return {}

    def _nll(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        labels, positions = batch.get("labels"), None
        if "separator" in batch:  # packed documents: each attends to, and is trained on, itself only
            positions, labels = packed_inputs(batch["input_ids"], batch["separator"], labels)
            labels = labels.masked_fill(batch["attention_mask"] == 0, IGNORE)
        return model.next_token_nll(batch["input_ids"], batch["attention_mask"], labels, positions)

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        nll, n = self._nll(model, batch)
        return nll / n.clamp(min=1)

    @torch.no_grad()
    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        nll, n = self._nll(model, batch)
        return [(float(nll), int(n))]

    zero_shot = predict

    def references(self, batch: dict[str, Tensor]) -> list:
        return [None]

    def metrics(self, predictions: list, references: list) -> dict[str, float]:
        total = sum(p[0] for p in predictions)
        n = sum(p[1] for p in predictions)
        loss = total / max(n, 1)
        return {"loss": loss, "perplexity": perplexity(total, n), "bits_per_token": loss / math.log(2), "tokens": n}

    def info(self) -> dict:
        return {"type": self.type, "name": self.name}
