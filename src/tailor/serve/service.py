"""What a server holds: the opened run, what it serves, its settings and the batcher in front of the model."""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tailor.generate import GenerationSettings
from tailor.models.load import context_length
from tailor.serve.batching import Batcher, Generation, Job, QueueFull, handlers, sampling_key
from tailor.serve.schemas import APIError, Sampling
from tailor.tasks.chat_format import ChatTemplate
from tailor.use import Loaded

ENDPOINTS = {
    "generate": ["/v1/chat/completions", "/v1/completions"],
    "classify": ["/v1/classify"],
    "answer": ["/v1/answer"],
}


@dataclass
class ServeSettings:
    """How the server takes requests."""

    api_key: str | None = None
    """Clients must send `Authorization: Bearer KEY` to /v1/*; None = no key needed."""
    max_batch: int = 8
    """Most rows (texts, QA windows, generated sequences) in one forward pass; 1 = no request batching."""
    max_queue: int = 64
    """Most requests waiting; one more is answered 503 with Retry-After."""
    batch_wait: float = 0.002
    """Seconds the worker waits for more requests when the queue cannot fill a batch."""
    max_tokens: int = 128
    """Tokens a chat reply may take when the request gives none (as `tailor chat`; at most what the context has left)."""
    retry_after: int = 1
    """Seconds a 503 tells the client to wait."""


class Service:
    """The loaded run, what it serves, and the batcher in front of it."""

    def __init__(self, run: Loaded, settings: ServeSettings, name: str):
        self.run, self.settings, self.name = run, settings, name
        self.kinds = serve_kinds(run.task)
        self.task = (
            getattr(run.task, "type", None) or "lm"
        )  # a plain model directory is served as an LM
        self.created = int(time.time())
        self.tok = copy.deepcopy(
            run.tok
        )  # the worker tokenises with run.tok; a tokenizer is not thread-safe
        self.template = ChatTemplate(self.tok, run.template.template)
        self.context = context_length(run.model.backbone)  # type: ignore[arg-type]
        self.batcher = Batcher(
            handlers(run, settings.max_batch),
            settings.max_batch,
            settings.max_queue,
            settings.batch_wait,
        )

    @property
    def endpoints(self) -> list[str]:
        return [e for kind in self.kinds for e in ENDPOINTS[kind]]

    def submit(self, job: Job) -> Job:
        try:
            self.batcher.submit(job)
        except QueueFull as e:
            raise APIError(
                503,
                f"the server is busy: {e}; retry after {self.settings.retry_after} s",
                type="server_error",
                code="overloaded",
                headers={"Retry-After": str(self.settings.retry_after)},
            ) from None
        return job

    def generation(
        self,
        body: Sampling,
        prompts: list[list[int]],
        default_max: int,
        stop: tuple = (),
        param: str = "messages",
    ) -> Job:
        """A generation job for `prompts`, each n times; 400 if a prompt leaves no room in the context."""
        room = self._room(max(len(p) for p in prompts), body.limit, param)
        try:
            settings = GenerationSettings(
                temperature=body.temperature or 0.0,
                top_p=body.top_p or 1.0,
                top_k=body.top_k or 0,
                repetition_penalty=body.repetition_penalty or 1.0,
                seed=body.seed,
            )
        except ValueError as e:
            raise APIError(400, str(e)) from None
        rows = [list(p) for p in prompts for _ in range(body.n or 1)]
        stops = tuple(dict.fromkeys([*(body.stop or ()), *stop]))
        gen = Generation(rows, body.limit or min(default_max, room), stops, settings)
        job = Job(
            "generate", gen, size=len(rows), key=sampling_key(settings), stream=bool(body.stream)
        )
        return self.submit(job)

    def _room(self, longest: int, limit: int | None, param: str) -> int:
        """Tokens the context has left after the longest prompt; 400 if none, or fewer than max_tokens."""
        room = self.context - longest
        if room < 1:
            raise APIError(
                400,
                f"this model's context is {self.context} tokens; the prompt takes {longest}, "
                f"so it must be at most {self.context - 1} tokens",
                param=param,
                code="context_length_exceeded",
            )
        if limit is not None and limit > room:
            raise APIError(
                400,
                f"this model's context is {self.context} tokens; the prompt takes {longest} and "
                f"max_tokens asks for {limit} more; shorten the prompt or lower max_tokens (at most "
                f"{room} here)",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return room


def serve_kinds(task) -> list[str]:
    """What a run's task serves: generation (chat, lm, a plain model), classification, answers."""
    kind = getattr(task, "type", None)
    if kind in ("classification", "regression"):
        return ["classify"]
    if kind == "qa":
        return ["answer"] if task.info().get("qa_mode") == "extractive" else ["answer", "generate"]
    return ["generate"]


async def result(request: Request, service: Service, job: Job) -> Any:
    """The job's result; if the client goes away first, the job is cancelled (its slot freed)."""
    while True:
        done, _ = await asyncio.wait({job.future}, timeout=0.25)
        if done:
            return job.future.result()
        if await request.is_disconnected():
            service.batcher.cancel(job)
            return Response(status_code=499)
