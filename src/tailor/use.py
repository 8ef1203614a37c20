"""Using a finished run: multi-turn chat with the run's template, answers from an extractive QA run,
labels with probabilities from a classification run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tailor.data.batching import collate
from tailor.generate import GenerationSettings, generate_text
from tailor.models.heads import TailorModel
from tailor.models.load import context_length
from tailor.tasks.chat_format import ChatTemplate
from tailor.tasks.multitask import TaskChoiceError, choose_task


@dataclass
class Loaded:
    """A run (or any model directory) ready to use."""

    model: TailorModel
    tok: Any
    task: Any  # the run's task (None for a plain model directory)
    template: ChatTemplate
    max_length: int


@dataclass
class Answer:
    text: str  # an exact substring of the context ("" = the context does not answer it)
    score: float
    start: int = -1  # its first character in the context (-1: no answer, or a generated one)


@dataclass
class Prediction:
    """One text's prediction: a label and each label's probability, or a regression value."""

    label: str | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None
    truncated: bool = False  # the text was cut to fit the run's max_length, as in training


def open_run(path: str | Path, task: str | None = None) -> Loaded:
    """Load a run directory (model, task layers, task, chat template), or a plain model directory.

    A multitask run needs `task`, the sub-task to use (TaskChoiceError lists them).
    """
    from tailor.config import ModelConfig
    from tailor.models.load import load

    run = Path(path)
    info: dict = {}
    loaded_task = None
    if (run / "tailor.json").is_file() and (run / "config.yaml").is_file():
        from tailor.api import load_run, load_task

        name = choose_task(json.loads((run / "tailor.json").read_text())["task"], task, run)
        model, tok, meta = load_run(run, name)
        loaded_task = load_task(run, name)
        info = meta["task"]["tasks"][name] if name else meta["task"]
    else:
        if task is not None:
            raise TaskChoiceError(f"{run} is a model directory, not a tailor run; leave out --task")
        backbone, tok, _ = load(ModelConfig(path=str(run)))
        model = TailorModel(backbone)
    model.eval()
    template = ChatTemplate(tok, info.get("chat_template"))
    return Loaded(model, tok, loaded_task, template, info.get("max_length") or _max_length(run, model))


def _max_length(run: Path, model: TailorModel) -> int:
    """data.max_length of the run, else the model's context."""
    try:
        stats = json.loads((run / "data.json").read_text())["token_statistics"]
        return int(stats["max_length"])
    except (OSError, KeyError, TypeError, ValueError):
        return min(_context(model), 2048)


def _context(model: TailorModel) -> int:
    return context_length(model.backbone)  # type: ignore[arg-type]


def _opened(run: Loaded | str | Path, task: str | None = None) -> Loaded:
    return run if isinstance(run, Loaded) else open_run(run, task)


def fit_conversation(template: ChatTemplate, messages: list[dict], budget: int) -> list[int]:
    """Generation prompt ids; the oldest turns (never the system message) are dropped until it fits."""
    msgs = list(messages)
    first = 1 if msgs and msgs[0]["role"] == "system" else 0
    ids = template.prompt_ids(msgs)
    while len(ids) > budget and len(msgs) - first > 1:  # the latest message always stays
        del msgs[first]
        while len(msgs) - first > 1 and msgs[first]["role"] == "assistant":  # start on a user turn
            del msgs[first]
        ids = template.prompt_ids(msgs)
    return ids


def chat_reply(run: Loaded | str | Path, messages: list[dict], settings: GenerationSettings | None = None,
               on_text: Callable[[str], None] | None = None, task: str | None = None) -> str:
    """The assistant's next reply to `messages` ([{"role", "content"}, ...]), with the run's template."""
    run = _opened(run, task)
    settings = settings or GenerationSettings()
    marker = run.template.end_marker
    if marker and marker not in run.tok.all_special_tokens and marker not in settings.stop:
        settings = replace(settings, stop=(*settings.stop, marker))
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    context = _context(run.model)
    # the conversation keeps at least half the context; the reply gets what is left (at most max_new_tokens)
    ids = fit_conversation(run.template, msgs, context - min(settings.max_new_tokens, context // 2))
    room = max(context - len(ids), 1)
    if room < settings.max_new_tokens:
        settings = replace(settings, max_new_tokens=room)
    return generate_text(run.model.backbone, run.tok, ids, settings, on_text=on_text).strip()


def answer(run: Loaded | str | Path, context: str, question: str, batch_size: int = 16,
           task: str | None = None) -> Answer:
    """Answer `question` from `context`: a span of the context (extractive run) or generated text."""
    run = _opened(run, task)
    qa = run.task
    if qa is None or getattr(qa, "type", None) != "qa":
        raise ValueError("this run is not a question-answering run (task.type qa); use `tailor chat` or `generate`")
    record = {"question": question, "context": context, "answers": {"text": [], "answer_start": []}}
    if not hasattr(qa, "best_answers"):  # generative QA: a chat reply to the same prompt
        messages = qa.messages_of(record)[:-1]
        return Answer(chat_reply(run, messages, GenerationSettings(max_new_tokens=qa.max_new_tokens)), 0.0)
    return extract_answers(run, [(context, question)], batch_size)[0]


def extract_answers(run: Loaded, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[Answer]:
    """An extractive QA run's answers to (context, question) pairs, the windows of all of them batched."""
    qa = run.task
    records = [{"question": q, "context": c, "answers": {"text": [], "answer_start": []}} for c, q in pairs]
    qa.clear()  # record ids count from 0 again
    try:
        candidates: list = []
        for batch in _batches(run, qa.encode_split(records, run.tok, run.max_length), batch_size):
            candidates += qa.predict(run.model, batch)
        spans = qa.best_spans(candidates)
    finally:
        qa.clear()
    return [Answer(*spans[i]) for i in range(len(records))]


def classify(run: Loaded | str | Path, inputs: list[str | dict], batch_size: int = 16,
             task: str | None = None) -> list[Prediction]:
    """Predictions of a classification or regression run for texts (or {"text", "text_pair"} dicts)."""
    run = _opened(run, task)
    kind = getattr(run.task, "type", None)
    if kind not in ("classification", "regression"):
        raise ValueError("this run is not a classification or regression run (task.type classification / regression)")
    placeholder = run.task.labels[0] if kind == "classification" else 0.0  # encoding needs a label; unused
    records = [{"text": x, "label": placeholder} if isinstance(x, str) else {**x, "label": placeholder}
               for x in inputs]
    data = run.task.encode_split(records, run.tok, run.max_length)
    getattr(run.task, "encode_problems", list)()  # drained (none: every label is a known one)
    out: list[Prediction] = []
    for batch in _batches(run, data, batch_size):
        if kind == "regression":
            out += [Prediction(value=float(v)) for v in run.task.predict(run.model, batch)]
            continue
        for p in run.task.probabilities(run.model, batch).tolist():
            best = max(range(len(p)), key=p.__getitem__)
            out.append(Prediction(run.task.labels[best], dict(zip(run.task.labels, p, strict=True))))
    for prediction, length in zip(out, data.fields["full_length"], strict=True):
        prediction.truncated = bool(length > run.max_length)
    return out


def _batches(run: Loaded, data: Any, batch_size: int) -> Iterator[dict]:
    """Batches of `data` in order, on the model's device."""
    device = next(run.model.parameters()).device
    for start in range(0, len(data), batch_size):
        batch = collate(data, np.arange(start, min(start + batch_size, len(data))), run.tok.pad_token_id)
        yield {k: v.to(device) for k, v in batch.items()}


def _write(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()


def _turns(stream: TextIO, interactive: bool, ask: Callable[[], str]) -> Iterator[str]:
    """User turns: prompted lines at a terminal, else stdin line by line until EOF."""
    while True:
        try:
            line = ask() if interactive else stream.readline()
        except (EOFError, KeyboardInterrupt):
            return
        if not interactive and line == "":
            return
        yield line.strip()


def chat_loop(run: Loaded, settings: GenerationSettings, system: str | None, stream: TextIO, out: TextIO,
              interactive: bool, ask: Callable[[], str] = lambda: input("you> ")) -> list[dict]:
    """Multi-turn chat: each reply streams to `out`; /reset forgets the conversation, /exit ends it."""
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    for line in _turns(stream, interactive, ask):
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            messages = list(start)
            continue
        messages.append({"role": "user", "content": line})
        if interactive:
            out.write("assistant> ")
        reply = chat_reply(run, messages, settings, on_text=partial(_write, out))
        out.write("\n")
        out.flush()
        messages.append({"role": "assistant", "content": reply})
    return messages
