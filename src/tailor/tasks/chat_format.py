"""Chat data formats -> messages, and a chat template rendered segment by segment into token ids.

Formats (small pure functions, as in TRL):
    {"messages": [{"role": "system"|"user"|"assistant", "content": "...", "weight": 0|1}, ...]}
    {"prompt": "...", "completion": "..."}          (or each a list of messages)
    {"instruction": "...", "input": "...", "output": "..."}   (Alpaca)

Rendering never searches for a response marker in the text: each message's piece of the template is
rendered and tokenised on its own and the pieces are concatenated, so which token belongs to which
message (and so which tokens train) is known exactly. Generation prompts are built the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The built-in template for models without one: plain-text role markers any BPE can encode; each
# assistant reply ends with the tokenizer's eos token, so generation stops there.
DEFAULT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- else -%}{{ '\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)
FORMATS = "messages, prompt/completion, or instruction/output (Alpaca)"


class FormatError(ValueError):
    """A record that is in none of the chat formats, or not a usable conversation."""


def _message(m: Any, i: int) -> dict:
    if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ("system", "user", "assistant"):
        raise FormatError(f"message {i} must be {{\"role\": system|user|assistant, \"content\": text}}")
    weight = m.get("weight", 1)
    if weight not in (0, 1) or isinstance(weight, bool):
        raise FormatError(f"message {i}: weight must be 0 or 1 (got {weight!r})")
    return {"role": m["role"], "content": m["content"], "weight": int(weight)}


def from_messages(messages: Any) -> list[dict]:
    """OpenAI-style messages, validated and copied (role, content, weight)."""
    if not isinstance(messages, list) or not messages:
        raise FormatError("'messages' must be a non-empty list of {\"role\": ..., \"content\": ...}")
    return [_message(m, i) for i, m in enumerate(messages, 1)]


def from_prompt_completion(prompt: Any, completion: Any) -> list[dict]:
    """prompt -> user turn(s), completion -> assistant turn(s); text or lists of messages."""
    head = from_messages(prompt) if isinstance(prompt, list) else [_text_turn("user", prompt, "prompt")]
    tail = from_messages(completion) if isinstance(completion, list) else [_text_turn("assistant", completion, "completion")]
    return head + tail


def from_alpaca(instruction: Any, input_: Any, output: Any) -> list[dict]:
    """Alpaca: the instruction (and its input, when not empty) is the user turn, output the reply."""
    user = _text_turn("user", instruction, "instruction")["content"]
    if input_ not in (None, ""):
        if not isinstance(input_, str):
            raise FormatError(f"'input' must be text (got {type(input_).__name__})")
        user = f"{user}\n\n{input_}"
    return [{"role": "user", "content": user, "weight": 1}, _text_turn("assistant", output, "output")]


def _text_turn(role: str, value: Any, key: str) -> dict:
    if not isinstance(value, str) or not value.strip():
        raise FormatError(f"'{key}' must be non-empty text (got {value!r:.40})")
    return {"role": role, "content": value, "weight": 1}


def to_messages(record: dict) -> list[dict]:
    """Any supported record -> messages; FormatError names what is wrong."""
    if "messages" in record:
        msgs = from_messages(record["messages"])
    elif "prompt" in record or "completion" in record:
        msgs = from_prompt_completion(record.get("prompt"), record.get("completion"))
    elif "instruction" in record or "output" in record:
        msgs = from_alpaca(record.get("instruction"), record.get("input"), record.get("output"))
    else:
        keys = ", ".join(k for k in record if not k.startswith("_")) or "none"
        raise FormatError(f"not a chat record: expected {FORMATS}; its keys are: {keys}")
    if not any(m["role"] == "assistant" for m in msgs):
        raise FormatError("has no assistant message, so there is nothing to learn from")
    return msgs


def conversation_key(record: dict) -> str:
    """The conversation's text, for duplicate and leakage checks (system text last: it is often shared)."""
    try:
        msgs = to_messages(record)
    except FormatError:
        return ""
    return "\n".join(m["content"] for m in sorted(msgs, key=lambda m: m["role"] == "system"))


# ---------------------------------------------------------------- rendering


@dataclass
class Rendered:
    """A conversation as token ids; `owner[i]` is the message index of an assistant reply's token, else -1."""

    ids: list[int]
    owner: list[int]
    reply_start: dict[int, int] = field(default_factory=dict)  # message index -> first token of its reply


class ChatTemplate:
    """A Jinja chat template (the model's own, or tailor's default) applied one message at a time."""

    def __init__(self, tok: Any, template: str | None = None):
        self.tok = tok
        self.template = template or getattr(tok, "chat_template", None) or DEFAULT_TEMPLATE
        if isinstance(self.template, dict):  # tokenizers with several named templates
            self.template = self.template.get("default") or next(iter(self.template.values()))
        self.is_default = self.template == DEFAULT_TEMPLATE
        self._bos = self._needs_bos()
        self.end_marker = self._end_marker()

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        if not messages and not add_generation_prompt:
            return ""
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self.tok.apply_chat_template(msgs, chat_template=self.template, tokenize=False,
                                            add_generation_prompt=add_generation_prompt)

    def segments(self, messages: list[dict], add_generation_prompt: bool = False) -> list[tuple[str, int]]:
        """(text, owner) pieces whose concatenation is the rendered conversation; owner as in Rendered."""
        pieces: list[tuple[str, int]] = []
        done = ""
        for i, m in enumerate(messages):
            if m["role"] == "assistant":
                head = self._extend(done, self.render(messages[:i], add_generation_prompt=True), i)
                pieces.append((head[len(done):], -1))
                done = head
            full = self._extend(done, self.render(messages[: i + 1]), i)
            pieces.append((full[len(done):], i if m["role"] == "assistant" else -1))
            done = full
        if add_generation_prompt:
            full = self._extend(done, self.render(messages, add_generation_prompt=True), len(messages))
            pieces.append((full[len(done):], -1))
        return [p for p in pieces if p[0]]

    def encode(self, messages: list[dict], add_generation_prompt: bool = False) -> Rendered:
        """Token ids of the conversation, each piece tokenised on its own."""
        pieces = self.segments(messages, add_generation_prompt)
        tokenized = self.tok([t for t, _ in pieces], add_special_tokens=False)["input_ids"] if pieces else []
        out = Rendered(ids=[self.tok.bos_token_id] if self._bos else [], owner=[-1] if self._bos else [])
        for (_, owner), ids in zip(pieces, tokenized, strict=True):
            if owner >= 0:
                out.reply_start[owner] = len(out.ids)
            out.ids += ids
            out.owner += [owner] * len(ids)
        return out

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The ids a reply to `messages` is generated from (generation prompt included)."""
        return self.encode(messages, add_generation_prompt=True).ids

    def _extend(self, done: str, text: str, i: int) -> str:
        if not text.startswith(done):
            raise FormatError(f"the chat template renders the conversation before message {i + 1} differently once "
                              "later messages follow, so replies cannot be masked exactly; use task.loss_on: last "
                              "with single-reply records, or a model whose template renders turn by turn")
        return text

    def _needs_bos(self) -> bool:
        """Tokenizers that add bos themselves (Llama) expect it first, unless the template writes it."""
        bos = self.tok.bos_token_id
        if bos is None or self.tok("a")["input_ids"][:1] != [bos]:
            return False
        first = self.render([{"role": "user", "content": "a"}])
        return not (self.tok.bos_token and first.startswith(self.tok.bos_token))

    def _end_marker(self) -> str:
        """Text the template writes after a reply's content (eos for the default; e.g. <|im_end|>)."""
        try:
            msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "REPLY"}]
            piece = next(t for t, owner in self.segments(msgs) if owner == 1)
        except (FormatError, StopIteration, Exception):  # noqa: BLE001 - any template failure: no marker
            return ""
        return piece.split("REPLY", 1)[-1].strip()

    def info(self) -> dict:
        return {"chat_template": self.template, "template_source": "default" if self.is_default else "model"}
