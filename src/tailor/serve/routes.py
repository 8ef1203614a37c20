"""The work endpoints: chat and text completions (OpenAI's format, streamed or not), classify, answer.

Only the endpoints the run serves are added; the app answers the others with a 404 that names them.
A chat reply is what `tailor chat` says for the same messages: the run's chat template, its
end-of-turn marker as a stop string, and the reply stripped of surrounding whitespace (streamed
pieces are trimmed the same way, so they add up to the non-streamed reply).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from tailor.serve.batching import Choice, Job
from tailor.serve.schemas import (
    AnswerRequest,
    APIError,
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    Sampling,
    completion_id,
    now,
    usage,
)
from tailor.serve.service import Service, result


def add_routes(app: FastAPI, service: Service) -> None:
    """POST routes for what the run serves."""
    if "generate" in service.kinds:
        app.post("/v1/chat/completions", response_model=None)(_chat(service))
        app.post("/v1/completions", response_model=None)(_completions(service))
    if "classify" in service.kinds:
        app.post("/v1/classify", response_model=None)(_classify(service))
    if "answer" in service.kinds:
        app.post("/v1/answer", response_model=None)(_answer(service))


def _chat(service: Service) -> Callable:
    async def chat_completions(body: ChatRequest, request: Request) -> Response | dict:
        ids = _chat_prompt(service, [m.as_dict() for m in body.messages])
        job = service.generation(body, [ids], service.settings.max_tokens, _end_marker(service))
        head = {"id": completion_id("chatcmpl"), "created": now(), "model": service.name}
        if job.stream:
            first = [_chat_chunk(head, i, None, None, role=True) for i in range(body.n or 1)]
            last = _usage_of(body, len(ids), head, "chat.completion.chunk")
            return _stream(service, job, first, partial(_chat_chunk, head), True, last)
        choices = await result(request, service, job)
        if isinstance(choices, Response):
            return choices
        replies = [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text.strip()},
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(choices)
        ]
        tokens = sum(c.tokens for c in choices)
        return {
            **head,
            "object": "chat.completion",
            "choices": replies,
            "usage": usage(len(ids), tokens),
        }

    return chat_completions


def _chat_chunk(
    head: dict, i: int, text: str | None, finish: str | None, role: bool = False
) -> dict:
    """One streamed chat event: the role first, then pieces of content, then the finish reason."""
    delta = {"content": text} if text is not None else {}
    if role:
        delta = {"role": "assistant", "content": ""}
    choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**head, "object": "chat.completion.chunk", "choices": [choice]}


def _chat_prompt(service: Service, messages: list[dict]) -> list[int]:
    try:
        return service.template.prompt_ids(messages)
    except Exception as e:  # noqa: BLE001 - a model's own template may refuse a conversation (roles, order)
        raise APIError(
            400, f"the run's chat template cannot render these messages: {e}", param="messages"
        ) from None


def _end_marker(service: Service) -> tuple[str, ...]:
    """The template's end-of-turn text as a stop string, unless it is a special token (then eos ends the reply)."""
    marker = service.template.end_marker
    return (marker,) if marker and marker not in service.tok.all_special_tokens else ()


def _completions(service: Service) -> Callable:
    async def completions(body: CompletionRequest, request: Request) -> Response | dict:
        prompts = _completion_prompts(service, body.prompt)
        job = service.generation(body, prompts, 16, param="prompt")  # 16: OpenAI's default here
        head = {"id": completion_id("cmpl"), "created": now(), "model": service.name}
        prompt_tokens = sum(len(p) for p in prompts)
        if job.stream:
            last = _usage_of(body, prompt_tokens, head, "text_completion")
            return _stream(service, job, [], partial(_text_chunk, head), False, last)
        choices = await result(request, service, job)
        if isinstance(choices, Response):
            return choices
        texts = [
            _text_chunk(head, i, c.text, c.finish_reason)["choices"][0]
            for i, c in enumerate(choices)
        ]
        tokens = sum(c.tokens for c in choices)
        return {
            **head,
            "object": "text_completion",
            "choices": texts,
            "usage": usage(prompt_tokens, tokens),
        }

    return completions


def _text_chunk(head: dict, i: int, text: str | None, finish: str | None) -> dict:
    choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
    return {**head, "object": "text_completion", "choices": [choice]}


def _completion_prompts(service: Service, prompt: str | list) -> list[list[int]]:
    """Text, texts, token ids or lists of token ids -> token ids per prompt (as `tailor generate` encodes)."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        prompt = [prompt]
    out = [service.tok(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompt]
    vocab = len(service.tok)
    if any(not 0 <= t < vocab for p in out for t in p):
        raise APIError(400, f"prompt: token ids must be in 0..{vocab - 1}", param="prompt")
    return out


def _usage_of(
    body, prompt_tokens: int, head: dict, kind: str
) -> Callable[[list[Choice]], dict] | None:
    """The last streamed chunk, with usage, when the client asked for it (stream_options.include_usage)."""
    if not (body.stream_options and body.stream_options.include_usage):
        return None
    return lambda choices: {
        **head,
        "object": kind,
        "choices": [],
        "usage": usage(prompt_tokens, sum(c.tokens for c in choices)),
    }


def _stream(
    service: Service,
    job: Job,
    first: list[dict],
    chunk: Callable,
    strip: bool,
    usage_of: Callable | None,
) -> StreamingResponse:
    """Server-sent events: the job's text pieces as they come, a finish chunk per choice, then [DONE]."""

    async def events() -> AsyncIterator[str]:
        trims = [_Trim(strip) for _ in job.payload.prompts]
        ended = 0
        try:
            for c in first:
                yield _sse(c)
            while ended < len(trims):
                kind, i, value = await job.events.get()
                if kind == "error":
                    yield _sse(
                        APIError(500, f"generation failed: {value}", type="server_error").body()
                    )
                    return
                if kind == "text":
                    piece = trims[i].feed(value)
                    if piece:
                        yield _sse(chunk(i, piece, None))
                else:
                    ended += 1
                    yield _sse(chunk(i, None, value.finish_reason))
            if usage_of is not None:
                yield _sse(usage_of(await job.future))
            yield _sse("[DONE]")
        finally:  # the client went away (the stream is cancelled) or the stream is done
            if not job.future.done():
                service.batcher.cancel(job)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


class _Trim:
    """Streamed pieces with the reply's leading and trailing whitespace held back, as str.strip() drops it."""

    def __init__(self, active: bool):
        self.active, self.started, self.held = active, False, ""

    def feed(self, piece: str) -> str:
        if not self.active:
            return piece
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        text = self.held + piece
        body = text.rstrip()
        self.held = text[len(body) :]
        return body


def _classify(service: Service) -> Callable:
    async def classify(body: ClassifyRequest, request: Request) -> Response | dict:
        records = body.records()
        pairs = "text_pair" in service.run.task.prompt.fields
        for i, r in enumerate(records):
            if pairs != ("text_pair" in r):
                need = (
                    'this run classifies pairs: give each input as {"text": ..., "text_pair": ...}'
                    if pairs
                    else "this run classifies single texts; leave out text_pair"
                )
                raise APIError(400, f"input[{i}]: {need}", param="input")
        predictions = await result(
            request, service, service.submit(Job("classify", records, size=len(records)))
        )
        if isinstance(predictions, Response):
            return predictions
        data = [
            {
                "index": i,
                "label": p.label,
                "probabilities": p.probabilities,
                "truncated": p.truncated,
            }
            if p.value is None
            else {"index": i, "value": p.value, "truncated": p.truncated}
            for i, p in enumerate(predictions)
        ]
        return {"object": "list", "model": service.name, "task": service.task, "data": data}

    return classify


def _answer(service: Service) -> Callable:
    async def answer(body: AnswerRequest, request: Request) -> Response | dict:
        head = {"object": "answer", "model": service.name}
        if "generate" in service.kinds:  # generative QA: the reply to the run's own QA prompt
            qa = service.run.task
            record = {"question": body.question, "context": body.context, "answers": {"text": []}}
            ids = _chat_prompt(service, qa.messages_of(record)[:-1])
            job = service.generation(
                Sampling.model_validate({}),
                [ids],
                qa.max_new_tokens,
                _end_marker(service),
                param="context",
            )
            choices = await result(request, service, job)
            if isinstance(choices, Response):
                return choices
            return {
                **head,
                "answer": choices[0].text.strip(),
                "score": None,
                "start": None,
                "end": None,
            }
        found = await result(
            request, service, service.submit(Job("answer", (body.context, body.question)))
        )
        if isinstance(found, Response):
            return found
        start = found.start if found.text else None
        return {
            **head,
            "answer": found.text,
            "score": found.score
            if math.isfinite(found.score)
            else None,  # an empty context has no span
            "start": start,
            "end": None if start is None else start + len(found.text),
        }

    return answer
