"""Request batching: a bounded queue in front of one worker thread that owns the model.

Requests become `Job`s. The worker takes the oldest job and every queued job with the same `key`
(same kind of work and, for generation, the same sampling), up to `max_batch` rows in all, and runs
them in one forward pass: texts to classify, QA windows, or generation rows (one left-padded batch
that ends each row on its own and streams each row's text to its own client). A job that arrives
while the queue holds `max_queue` jobs is refused (`QueueFull`: the app answers 503), so a burst
never turns into an unbounded wait. A cancelled job (its client went away) leaves the queue, or,
while it is generating, ends its rows at the next step.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tailor.generate import GenerationSettings, Row, cut_at_stop, generate_rows
from tailor.use import Loaded, classify, extract_answers


class QueueFull(Exception):
    """The queue holds max_queue jobs already."""


class Cancelled(Exception):
    """The job was cancelled before it ran."""


@dataclass(eq=False)
class Job:
    """One request's work, and how its results travel back to the event loop that awaits them."""

    kind: str  # "generate", "classify" or "answer"
    payload: Any
    size: int = 1  # rows it adds to a batch
    key: tuple = ()  # jobs with equal kind and key may share a forward pass
    stream: bool = False  # generation: pieces of text are sent as events while it runs
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    future: asyncio.Future = field(init=False)
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    def emit(self, *event: Any) -> None:
        """Send a streaming event (from the worker thread)."""
        self._call(self.events.put_nowait, event)

    def finish(self, result: Any) -> None:
        self._call(_settle, self.future, result, None)

    def fail(self, error: BaseException) -> None:
        if self.stream:
            self.emit("error", None, error)
        self._call(_settle, self.future, None, error)

    def _call(self, fn: Callable, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop has closed (the server stopped): nobody waits
            pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
        future.exception()  # retrieved: a job nobody awaits any more logs nothing
    else:
        future.set_result(result)


class Batcher:
    """The queue and its worker thread (started with the first job, so a mounted app works too)."""

    def __init__(
        self,
        handlers: dict[str, Callable[[list[Job]], None]],
        max_batch: int,
        max_queue: int,
        wait: float = 0.0,
    ):
        self.handlers, self.max_batch, self.max_queue, self.wait = (
            handlers,
            max_batch,
            max_queue,
            wait,
        )
        self.queue: deque[Job] = deque()
        self.running: list[Job] = []
        self.counts: Counter = Counter()
        self.largest = 0  # most jobs run in one batch
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, job: Job) -> None:
        """Queue a job, or raise QueueFull."""
        with self._cond:
            if len(self.queue) >= self.max_queue:
                self.counts["rejected"] += 1
                raise QueueFull(
                    f"{len(self.queue)} requests are waiting (the limit is {self.max_queue})"
                )
            self.queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tailor-serve", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def cancel(self, job: Job) -> None:
        """The client went away: drop the job if it waits, else let its generation end at the next step."""
        job.cancelled.set()
        with self._cond:
            if job in self.queue:
                self.queue.remove(job)
                job.fail(Cancelled())
            self.counts["cancelled"] += 1

    def stats(self) -> dict:
        with self._cond:
            return {
                "queued": len(self.queue),
                "running": len(self.running),
                "served": self.counts["served"],
                "rejected": self.counts["rejected"],
                "cancelled": self.counts["cancelled"],
                "batches": self.counts["batches"],
                "largest_batch": self.largest,
            }

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._cond:  # a later job starts a new worker
            self._thread, self._stopping = None, False

    def _work(self) -> None:
        while True:
            jobs = self._next()
            if jobs is None:
                return
            try:
                self.handlers[jobs[0].kind](jobs)
            except Exception as e:  # noqa: BLE001 - a failed batch fails its requests, never the server
                for job in jobs:
                    job.fail(e)
            with self._cond:
                self.running = []
                self.counts["served"] += len(jobs)
                self.counts["batches"] += 1

    def _next(self) -> list[Job] | None:
        """The oldest job and the queued jobs that can share its forward pass (None: stop)."""
        with self._cond:
            while not self.queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            if (
                self.wait > 0
                and self.max_batch > 1
                and sum(j.size for j in self.queue) < self.max_batch
            ):
                self._cond.wait(self.wait)  # requests a moment apart still share a pass
            first = self.queue.popleft()
            jobs, size = [first], first.size
            for job in list(self.queue):
                if (
                    job.kind == first.kind
                    and job.key == first.key
                    and size + job.size <= self.max_batch
                ):
                    jobs.append(job)
                    size += job.size
                    self.queue.remove(job)
            self.running = jobs
            self.largest = max(self.largest, len(jobs))
            return jobs


# ---------------------------------------------------------------- what a batch runs


@dataclass
class Generation:
    """A generation job: prompts (one row each), their shared limits, and the sampling."""

    prompts: list[list[int]]
    max_tokens: int
    stop: tuple[str, ...]
    settings: GenerationSettings


@dataclass
class Choice:
    text: str
    finish_reason: str  # "stop" (eos or a stop string) or "length"
    tokens: int  # completion tokens generated


def sampling_key(settings: GenerationSettings) -> tuple:
    """Generation jobs with the same key share a batch. Seeded sampling runs alone (its own random stream)."""
    if settings.temperature == 0:
        return ("greedy", settings.repetition_penalty)
    if settings.seed is not None:
        return ("seeded", object())
    return (settings.temperature, settings.top_k, settings.top_p, settings.repetition_penalty)


def run_generation(run: Loaded, jobs: list[Job]) -> None:
    """Every row of every job in one batch; each job finishes as soon as its own rows have ended."""
    rows: list[Row] = []
    for job in jobs:
        gen: Generation = job.payload
        results: list[Choice | None] = [None] * len(gen.prompts)
        for i, ids in enumerate(gen.prompts):
            rows.append(
                Row(
                    ids,
                    gen.max_tokens,
                    gen.stop,
                    on_text=partial(job.emit, "text", i) if job.stream else None,
                    on_end=partial(_row_ended, run, job, results, i),
                    cancelled=job.cancelled.is_set,
                )
            )
    generate_rows(run.model.backbone, run.tok, rows, jobs[0].payload.settings)


def _row_ended(run: Loaded, job: Job, results: list, i: int, ids: list[int]) -> None:
    gen: Generation = job.payload
    full = run.tok.decode(ids, skip_special_tokens=True)
    text = cut_at_stop(full, gen.stop)
    reason = "length" if len(ids) >= gen.max_tokens and text == full else "stop"
    results[i] = Choice(text, reason, len(ids))
    if job.stream:
        job.emit("end", i, results[i])
    if all(r is not None for r in results):
        job.finish(results)


def run_classification(run: Loaded, jobs: list[Job], batch_size: int) -> None:
    """All jobs' texts through the classifier together; each job gets its own slice back."""
    records = [r for job in jobs for r in job.payload]
    predictions = classify(run, records, batch_size=batch_size)
    start = 0
    for job in jobs:
        job.finish(predictions[start : start + len(job.payload)])
        start += len(job.payload)


def run_answers(run: Loaded, jobs: list[Job], batch_size: int) -> None:
    """All jobs' (context, question) windows through the span head together."""
    answers = extract_answers(run, [job.payload for job in jobs], batch_size=batch_size)
    for job, answer in zip(jobs, answers, strict=True):
        job.finish(answer)


def handlers(run: Loaded, max_batch: int) -> dict[str, Callable[[list[Job]], None]]:
    """What the worker runs for each kind of job."""
    return {
        "generate": partial(run_generation, run),
        "classify": partial(run_classification, run, batch_size=max_batch),
        "answer": partial(run_answers, run, batch_size=max_batch),
    }
