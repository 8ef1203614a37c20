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
