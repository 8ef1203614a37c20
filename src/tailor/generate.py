"""Text generation on a causal LM: transformers' `generate` (KV cache, sampling) plus stop strings,
streaming, batching with left padding, and prompts that fit the model's context."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from tailor.models.load import context_length


@dataclass
class GenerationSettings:
    """How to continue a prompt."""

    max_new_tokens: int = 128
    """Most tokens to generate (fewer if eos or a stop string comes first)."""
    temperature: float = 0.0
    """0 = greedy (argmax); above 0, sample from softmax(logits / temperature)."""
    top_k: int = 0
    """Sample only among the k most likely tokens; 0 = no limit."""
    top_p: float = 1.0
    """Sample only among the most likely tokens whose probabilities add up to top_p; 1.0 = no limit."""
    repetition_penalty: float = 1.0
    """Above 1.0, discourage tokens already in the prompt or output (CTRL-style); 1.0 = off."""
    stop: tuple[str, ...] = ()
    """Stop strings: generation ends when one appears, and the text is cut before the first one."""
    use_cache: bool = True
    """Reuse attention keys/values between steps (KV cache); same output, much faster."""
    seed: int | None = None
    """Seed for sampling (global RNG state is left untouched); None = not reproducible."""

    def __post_init__(self) -> None:
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, 0 for greedy (got {self.temperature})")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0, 0 for no limit (got {self.top_k})")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0 (got {self.repetition_penalty})")
        if any(not s for s in self.stop):
            problems.append("stop strings must not be empty")
        if problems:
            raise ValueError("; ".join(problems))


def generate_text(
    model,
    tokenizer,
    prompt: str | list[int],
    settings: GenerationSettings,
    on_text: Callable[[str], None] | None = None,
) -> str:
    """Continue `prompt`; return only the new text, cut before the first stop string.

    With `on_text`, pieces of the new text are passed to it as they are generated; text that might
    be the start of a stop string is held back until it is known not to be, so the pieces always
    add up to the returned text.
    """
    ids = list(prompt) if not isinstance(prompt, str) else tokenizer(prompt)["input_ids"]
    streamer = (
        _StopAwareStreamer(tokenizer, settings.stop, on_text) if on_text is not None else None
    )
    new = generate_ids(model, tokenizer, [ids], settings, streamer=streamer)[0]
    return cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), settings.stop)


def generate_batch(
    model, tokenizer, prompts: Sequence[str], settings: GenerationSettings, batch_size: int = 16
) -> list[str]:
    """Continue each prompt (batched, left-padded); the new text per prompt, stop strings applied."""
    encoded = tokenizer(list(prompts))["input_ids"]
    new = generate_ids(model, tokenizer, encoded, settings, batch_size=batch_size)
    return [
        cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), settings.stop) for ids in new
    ]


def generate_ids(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    streamer: BaseStreamer | None = None,
    batch_size: int = 16,
) -> list[list[int]]:
    """The new token ids per prompt, up to and without eos.

    Generation stops early at eos or at a stop string; the ids are not cut at the stop string
    (a token may hold more than it), `cut_at_stop` on the decoded text does that. Prompts are
    run in batches of similar length to keep padding small; the results keep the input order.
    """
    if streamer is not None and len(prompts) != 1:
        raise ValueError("streaming needs exactly one prompt")
    prompts, max_new = _fit_context(
        _start_ids(tokenizer, prompts), settings.max_new_tokens, context_length(model)
    )
    config = _generation_config(model, tokenizer, settings, max_new)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    with _eval_mode(model), _seeded(settings.seed, model):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [Row(prompts[i], max_new, settings.stop) for i in rows]
            new = _generate(model, tokenizer, batch, config, streamer)
            for i, ids in zip(rows, new, strict=True):
                out[i] = ids
    return out


@dataclass
class Row:
    """One prompt of a batch generated together (generate_rows), with its own limits and callbacks."""

    ids: list[int]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    on_text: Callable[[str], None] | None = None
    """Pieces of the new text as they come, as generate_text's on_text."""
    on_end: Callable[[list[int]], None] | None = None
    """Called with the row's new ids as soon as the row ends, while other rows may go on."""
    cancelled: Callable[[], bool] = field(default=lambda: False)
    """Checked every step; True ends the row (e.g. its client went away)."""


def generate_rows(
    model, tokenizer, rows: Sequence[Row], settings: GenerationSettings
) -> list[list[int]]:
    """The new ids per row (up to and without eos), all rows in one left-padded batch.

    `settings` gives the sampling (its max_new_tokens and stop are ignored: each row has its own).
    Nothing is cut to fit: a row whose prompt and max_new_tokens exceed the model's context is a
    ValueError. Greedy rows give what generate_ids gives for each alone.
    """
    context = context_length(model)
    starts = _start_ids(tokenizer, [r.ids for r in rows])
    rows = [Row(**{**vars(r), "ids": ids}) for r, ids in zip(rows, starts, strict=True)]
    for r in rows:
        if not r.ids or r.max_new_tokens < 1 or len(r.ids) + r.max_new_tokens > context:
            raise ValueError(
                f"a prompt of {len(r.ids)} tokens and max_new_tokens={r.max_new_tokens} "
                f"do not fit the model's context of {context} tokens"
            )
    config = _generation_config(model, tokenizer, settings, max(r.max_new_tokens for r in rows))
    limits = _RowLimits(tokenizer, rows, _eos_ids(config))
    with _eval_mode(model), _seeded(settings.seed, model):
        return _generate(
            model, tokenizer, rows, config, _RowStreams(tokenizer, rows, limits), limits
        )


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any stop string."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(hits)] if hits else text


# ---------------------------------------------------------------- internals


def _start_ids(tokenizer, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """The prompts as lists; an empty prompt starts from bos (or eos)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [list(p) or ([bos] if bos is not None else []) for p in prompts]


def _eos_ids(config: GenerationConfig) -> set[int]:
    eos = config.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def _generate(
    model, tokenizer, rows: list[Row], config: GenerationConfig, streamer, limits=None
) -> list[list[int]]:
    """One left-padded batch through `model.generate`; new ids per row, each cut where it ended."""
    limits = limits or _RowLimits(tokenizer, rows, _eos_ids(config))
    prompts, width = [r.ids for r in rows], limits.width
    input_ids = torch.full((len(prompts), width), config.pad_token_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, T)
    for row, ids in enumerate(prompts):  # left padding: every prompt ends where generation starts
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    out = model.generate(
        input_ids=input_ids.to(model.device),
        attention_mask=attention_mask.to(model.device),
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([limits]),
        streamer=streamer,
    )  # (B, T + new)
    return [row[:n] for row, n in zip(out[:, width:].tolist(), limits.length, strict=True)]


def _generation_config(
    model, tokenizer, settings: GenerationSettings, max_new: int
) -> GenerationConfig:
    # Every sampling field is set explicitly: transformers fills fields left as None from the
    # model's own generation_config.json (which may say do_sample=True, top_p=0.9, ...).
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if pad is None:  # the usual case for causal LMs; padded positions are masked anyway
        pad = (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0
    sampling = (
        dict(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
        if settings.temperature > 0
        else {}  # greedy: sampling fields unused; setting them only earns a warning
    )
    return GenerationConfig(
        max_new_tokens=max_new,
        do_sample=settings.temperature > 0,
        num_beams=1,
        penalty_alpha=0.0,
        repetition_penalty=settings.repetition_penalty,
        use_cache=settings.use_cache,
        eos_token_id=eos,
        pad_token_id=pad,
        **sampling,
    )


def _fit_context(prompts, max_new: int, context: int) -> tuple[list[list[int]], int]:
    """Cut prompts from the left so that prompt + max_new fits the model's positions; warn what was done."""
    if max_new >= context:
        warnings.warn(
            f"max_new_tokens={max_new} does not fit the model's context of {context} tokens; "
            f"generating at most {context - 1}",
            stacklevel=3,
        )
        max_new = context - 1
    keep = context - max_new
    if any(len(p) > keep for p in prompts):
        # the same text for the same settings, so Python's warning filter shows it once
        warnings.warn(
            f"prompt longer than the model's context ({context} tokens) minus max_new_tokens ({max_new}): "
            f"kept its last {keep} tokens",
            stacklevel=3,
        )
    fitted = [list(p)[-keep:] for p in prompts]
    if any(not p for p in fitted):
        raise ValueError(
            "cannot generate from an empty prompt: the tokenizer has no bos or eos token"
        )
    return fitted, max_new


@contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd; the model's training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        # no_grad rather than inference_mode: generation may run mid-training, and tensors a
        # model caches under inference_mode cannot be used by autograd later
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


@contextmanager
def _seeded(seed: int | None, model) -> Iterator[None]:
    """Seed the RNG for sampling without changing the caller's RNG state."""
    if seed is None:
        yield
        return
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _RowLimits(StoppingCriteria):
    """End each row at eos, at its max_new_tokens, at one of its stop strings, or when cancelled.

    `length[i]` is set once row i ends: how many new tokens it keeps (eos is not kept).
    """

    def __init__(self, tokenizer, rows: Sequence[Row], eos: set[int]):
        self.tokenizer, self.rows, self.eos = tokenizer, rows, eos
        self.width = max(len(r.ids) for r in rows)  # the prompts' width, left-padded
        self.length: list[int | None] = [None] * len(rows)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.Tensor:  # (B,) bool
        n = input_ids.shape[1] - self.width
        last = input_ids[:, -1].tolist()
        for i, row in enumerate(self.rows):
            if self.length[i] is not None:
                continue
            if last[i] in self.eos:
                self.length[i] = n - 1
            elif n >= row.max_new_tokens or row.cancelled() or self._stopped(row, input_ids[i]):
                self.length[i] = n
        return torch.tensor([x is not None for x in self.length], device=input_ids.device)

    def _stopped(self, row: Row, ids: torch.Tensor) -> bool:
        if not row.stop:
            return False
        # a stop string of n characters (at most 4n bytes) spans at most 4n + 2 tokens
        window = 4 * max(len(s) for s in row.stop) + 4
        start = max(self.width, len(ids) - window)
        return any(
            s in self.tokenizer.decode(ids[start:], skip_special_tokens=True) for s in row.stop
        )


class _RowStreams(BaseStreamer):
    """Collect each row's new ids, pass its text on (as _StopAwareStreamer), report its end at once."""

    def __init__(self, tokenizer, rows: Sequence[Row], limits: _RowLimits):
        self.rows, self.limits = rows, limits
        self.text = [
            _StopAwareStreamer(tokenizer, r.stop, r.on_text) if r.on_text else None for r in rows
        ]
        self.ids: list[list[int]] = [[] for _ in rows]
        self.ended = [False] * len(rows)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if (
            not self.prompt_seen
        ):  # generate() first puts the prompts: each text stream skips its own
            self.prompt_seen = True
            for stream, prompt in zip(self.text, value, strict=True):
                if stream is not None:
                    stream.put(prompt)
            return
        # a step's tokens come before or after the criteria saw them (transformers versions differ):
        # a row keeps tokens up to its length and ends once it has them
        for i, token in enumerate(value.reshape(-1).tolist()):
            if self.ended[i]:
                continue
            kept = self.limits.length[i]
            if kept is None or len(self.ids[i]) < kept:
                self.ids[i].append(token)
                if (stream := self.text[i]) is not None:
                    stream.put(torch.tensor([token]))
            if kept is not None and len(self.ids[i]) >= kept:
                self._end(i)

    def end(self) -> None:
        for i in range(len(self.rows)):
            if not self.ended[i]:
                self._end(i)

    def _end(self, i: int) -> None:
        self.ended[i] = True
        kept = self.limits.length[i]
        if kept is not None:
            del self.ids[i][kept:]
        if (stream := self.text[i]) is not None:
            stream.end()
        if (on_end := self.rows[i].on_end) is not None:
            on_end(self.ids[i])


class _StopAwareStreamer(BaseStreamer):
    """Pass new text to a callback as it comes, never passing a stop string or what follows it.

    Text that may still grow into a stop string, or that ends in an incomplete UTF-8 character,
    is held back until the next token settles it.
    """

    def __init__(self, tokenizer, stop: Sequence[str], on_text: Callable[[str], None]):
        self.tokenizer, self.stop, self.on_text = tokenizer, tuple(stop), on_text
        self.ids: list[int] = []
        self.sent = 0  # characters passed on so far
        self.prompt_seen = False
        self.stopped = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        if not self.stopped:
            self.ids.extend(value.reshape(-1).tolist())
            self._flush(final=False)

    def end(self) -> None:
        if not self.stopped:
            self._flush(final=True)

    def _flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = cut_at_stop(text, self.stop)
        if len(cut) < len(text):
            self.stopped, ready = True, len(cut)
        elif final:
            ready = len(text)
        else:
            ready = len(text) - _unsettled_suffix(text, self.stop)
        if ready > self.sent:
            self.on_text(text[self.sent : ready])
            self.sent = ready


def _unsettled_suffix(text: str, stop: Sequence[str]) -> int:
    """Length of the end of `text` that could still become a stop string or a complete character."""
    settled = text.rstrip("\ufffd")  # an incomplete multi-byte character decodes to U+FFFD
    longest = 0  # the longest end of the settled text that begins a stop string
    for s in stop:
        for n in range(min(len(s) - 1, len(settled)), longest, -1):
            if settled.endswith(s[:n]):
                longest = n
                break
    return len(text) - len(settled) + longest
