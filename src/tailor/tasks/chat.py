"""Instruction and chat fine-tuning: loss only on what the assistant says; replies scored by generation."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from tailor.config import RunConfig, TaskConfig
from tailor.data.batching import IGNORE, Encoded, from_examples
from tailor.data.check import FieldSpec, Schema
from tailor.data.readers import Problem
from tailor.evaluate.metrics import generation_metrics
from tailor.generate import GenerationSettings, cut_at_stop, generate_ids
from tailor.tasks.chat_format import (
    ChatTemplate,
    FormatError,
    Rendered,
    conversation_key,
    to_messages,
)


def trained_mask(r: Rendered, messages: list[dict], loss_on: str) -> list[bool]:
    """Which tokens carry a loss: every assistant reply (weight 1), only the last reply, or everything."""
    if loss_on == "all":
        return [True] * len(r.ids)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    keep = {last} if loss_on == "last" else {i for i, m in enumerate(messages) if m["role"] == "assistant" and m["weight"]}
    return [o in keep for o in r.owner]


def where(record: dict) -> tuple[str, int | None]:
    return record.get("_file", "<data>"), record.get("_line")


class ChatTask:
    """task.type chat: messages / prompt-completion / Alpaca records, trained on assistant tokens."""

    type = "chat"

    def __init__(self, cfg: TaskConfig, run: RunConfig | None = None):
        self.name = cfg.name or self.type
        self.loss_on = cfg.loss_on
        self.max_new_tokens = run.eval.max_new_tokens if run is not None else 64
        self.template: ChatTemplate | None = None
        self.saved_template: str | None = None  # from a finished run's tailor.json
        self.tok: Any = None
        self.problems: list[Problem] = []
        self.refs: list[list[str]] = []  # per example id (gid): the reference replies
        self.prompts: list[str] = []  # per gid: the last user message, for the samples table
        self.outputs: dict[str, dict[int, str]] = {"baseline": {}, "fine_tuned": {}}

    # ------------------------------------------------------------ data

    def schema(self) -> Schema:
        return Schema(fields=[FieldSpec("messages", "messages", required=False)])

    def messages_of(self, record: dict) -> list[dict]:
        """The record as a conversation (FormatError when it is not one)."""
        return to_messages(record)

    def references_of(self, record: dict, messages: list[dict]) -> list[str]:
        """What a generated reply is scored against: the last assistant message."""
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return [messages[last]["content"]]

    def prompt_of(self, record: dict, messages: list[dict]) -> str:
        """The prompt as the samples table shows it: the last user message before the scored reply."""
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        user = [m["content"] for m in messages[:last] if m["role"] == "user"]
        return user[-1] if user else ""

    def dedup_key(self, record: dict) -> str:
        return conversation_key(record)

    def fit_labels(self, train_records: list[dict]) -> None:
        pass

    def chat_template(self, tok: Any) -> ChatTemplate:
        """The run's template: the one saved with a finished run, else the model's own, else the default."""
        if self.template is None or self.template.tok is not tok:
            self.template = ChatTemplate(tok, self.saved_template)
        return self.template

    def encode(self, record: dict, tok: Any, max_length: int) -> dict:
        feat = self.encode_one(record, tok, max_length, gid=len(self.refs))
        if feat is None:
            raise ValueError(str(self.problems[-1]))
        return feat

    def encode_split(self, records: list[dict], tok: Any, max_length: int) -> Encoded:
        """Encode every record; records that cannot train are reported (encode_problems) and left out."""
        self.tok = tok
        if getattr(tok, "chat_template", None) is None:  # saved with the run's tokenizer, for plain transformers
            tok.chat_template = self.chat_template(tok).template
        feats, index = [], []
        for i, record in enumerate(records):
            feat = self.encode_one(record, tok, max_length, gid=len(self.refs))
            if feat is not None:
                feats.append(feat)
                index.append(i)
        return from_examples(feats, index=index)

    def encode_one(self, record: dict, tok: Any, max_length: int, gid: int) -> dict | None:
        """Features of one record (ids, labels, gid, prompt_len, full_length), or None and a Problem."""
        file, line = where(record)
        try:
            messages = self.messages_of(record)
            rendered = self.chat_template(tok).encode(messages)
        except FormatError as e:
            self.problems.append(Problem("error", file, line, None, str(e)))
            return None
        except Exception as e:  # noqa: BLE001 - a model's Jinja template may raise anything (e.g. role order)
            self.problems.append(Problem("error", file, line, None, f"the chat template cannot render it: {e}"))
            return None
        mask = trained_mask(rendered, messages, self.loss_on)
        ids = rendered.ids[:max_length]
        if not any(mask[:max_length]):
            self.problems.append(self._untrainable(file, line, mask, max_length))
            return None
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt_len = rendered.reply_start[last]
        if prompt_len >= max_length:
            self.problems.append(Problem("warning", file, line, None,
                                         f"the last assistant reply starts after token {max_length} (data.max_length); "
                                         "it is trained on earlier replies only and scored from a cut prompt",
                                         kind="last reply past data.max_length"))
        labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=False)]
        self.refs.append(self.references_of(record, messages))
        self.prompts.append(self.prompt_of(record, messages))
        return {"input_ids": ids, "labels": labels, "gid": gid, "prompt_len": min(prompt_len, len(ids)),
                "full_length": len(rendered.ids)}

    def _untrainable(self, file: str, line: int | None, mask: list[bool], max_length: int) -> Problem:
        if not any(mask):
            why = ("every assistant message has weight 0, so no token would be trained; set weight 1 on at least "
                   "one reply or remove the record")
        else:
            first = mask.index(True)
            why = (f"data.max_length={max_length} cuts it before the first trained assistant token (token {first}"
                   f" of {len(mask)}), so nothing would be trained; shorten the conversation or raise data.max_length")
        return Problem("error", file, line, None, why)

    def encode_problems(self) -> list[Problem]:
        return list(self.problems)

    # ------------------------------------------------------------ model

    def build_heads(self, hidden_size: int) -> dict:
        return {}

    def loss(self, model: Any, batch: dict[str, Tensor]) -> Tensor:
        nll, n = model.next_token_nll(batch["input_ids"], batch["attention_mask"], batch["labels"])
        return nll / n.clamp(min=1)

    def generate_replies(self, model: Any, prompts: list[list[int]]) -> list[str]:
        """Greedy replies (eval.max_new_tokens, stop at eos or the template's end-of-turn marker)."""
        template = self.chat_template(self.tok)
        stop = (template.end_marker,) if template.end_marker and template.end_marker not in self.tok.all_special_tokens else ()
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens, stop=stop)
        backbone = getattr(model, "backbone", model)
        new = generate_ids(backbone, self.tok, prompts, settings, batch_size=max(len(prompts), 1))
        return [cut_at_stop(self.tok.decode(ids, skip_special_tokens=True), stop).strip() for ids in new]

    def _generate(self, model: Any, batch: dict[str, Tensor], kind: str) -> list[str]:
        ids = batch["input_ids"].tolist()
        prompts = [row[:n] for row, n in zip(ids, batch["prompt_len"].tolist(), strict=True)]
        texts = self.generate_replies(model, prompts)
        for gid, text in zip(batch["gid"].tolist(), texts, strict=True):
            self.outputs[kind][gid] = text
        return texts

    def predict(self, model: Any, batch: dict[str, Tensor]) -> list:
        return self._generate(model, batch, "fine_tuned")

    def zero_shot(self, model: Any, batch: dict[str, Tensor]) -> list:
        """The pre-trained model, prompted with the same template, answers greedily."""
        return self._generate(model, batch, "baseline")

    def references(self, batch: dict[str, Tensor]) -> list:
        return [self.refs[g] for g in batch["gid"].tolist()]

    def metrics(self, predictions: list, references: list) -> dict[str, float]:
        return generation_metrics(predictions, references)

    # ------------------------------------------------------------ run

    baseline_method = "the pre-trained model prompted with the same chat template, greedy decoding"

    def readable(self, value: Any) -> str:
        return " / ".join(value) if isinstance(value, list) else value

    def info(self) -> dict:
        template = self.template.info() if self.template is not None else {}
        return {"type": self.type, "name": self.name, "loss_on": self.loss_on, **template}

    def restore(self, info: dict) -> None:
        """Use the template a finished run was trained with."""
        self.saved_template = info.get("chat_template")
        self.template = None

    def sample_sections(self, encoded: dict[str, Encoded], samples: int) -> list[str]:
        """A markdown table of sample generations on the test split (baseline and fine-tuned)."""
        data = encoded.get("test")
        if data is None or not len(data) or samples <= 0:
            return []
        rows = ["## Sample generations (test)", "",
                "| prompt | reference | pre-trained | fine-tuned |", "|---|---|---|---|"]
        for gid in np.asarray(data.fields["gid"])[:samples].tolist():
            cells = [self.prompts[gid], " / ".join(self.refs[gid]) or "(no answer)",
                     self.outputs["baseline"].get(gid, "-"), self.outputs["fine_tuned"].get(gid, "-")]
            rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        return ["\n".join(rows)]


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"
