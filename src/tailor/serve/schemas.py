"""Request bodies of the server (OpenAI's where one exists), its error bodies and response pieces.

Requests are pydantic models; unknown fields are ignored, as OpenAI clients send fields a small
server has no use for (user, logprobs: false, ...). Every mistake becomes an `APIError`, which the
app renders as OpenAI does: {"error": {"message", "type", "param", "code"}} with its HTTP status.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP = 4  # as OpenAI
MAX_N = 16
MAX_INPUTS = 256  # texts per /v1/classify request


class APIError(Exception):
    """A request the server refuses; rendered as an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )
        self.headers = headers

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class Message(_Request):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def as_dict(self) -> dict:
        """{"role", "content"} with text parts joined; OpenAI's `developer` is the system role."""
        text = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Request):
    include_usage: bool = False


class Sampling(_Request):
    """What chat and completion requests share. Omitted temperature means greedy, as `tailor chat`."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP or not all(stops):
            raise ValueError(f"give at most {MAX_STOP} stop strings, none empty")
        return stops

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("give a prompt: text, a list of texts, or token ids")
        return value


class TextInput(_Request):
    text: str
    text_pair: str | None = None


class ClassifyRequest(_Request):
    model: str | None = None
    input: str | list[str | TextInput] = Field(
        description="a text, or a list of texts or {text, text_pair}"
    )

    @field_validator("input")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= MAX_INPUTS:
            raise ValueError(f"give 1 to {MAX_INPUTS} texts (got {len(value)})")
        return value

    def records(self) -> list[dict]:
        items = [self.input] if isinstance(self.input, str) else self.input
        return [
            {"text": x} if isinstance(x, str) else x.model_dump(exclude_none=True) for x in items
        ]


class AnswerRequest(_Request):
    model: str | None = None
    question: str = Field(min_length=1)
    context: str


def validation_error(errors: list[Any]) -> APIError:
    """The first problem pydantic (or FastAPI's JSON parsing) found, as a 400 naming the field."""
    e: dict[str, Any] = (
        dict(errors[0]) if errors else {"type": "", "loc": (), "msg": "invalid request"}
    )
    if e["type"] == "json_invalid":
        detail = (e.get("ctx") or {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON ({detail})".replace(" ()", ""))
    param = _param([x for x in e["loc"] if x != "body"])
    if not param:
        what = "has no JSON body" if e["type"] == "missing" else "must be a JSON object"
        return APIError(400, f"the request {what}")
    if e["type"] == "missing":
        return APIError(400, f"'{param}' is required", param=param)
    got = e.get("input")
    shown = f" (got {got!r:.80})" if got is not None and not isinstance(got, dict | list) else ""
    return APIError(400, f"{param}: {e['msg'].removeprefix('Value error, ')}{shown}", param=param)


def _param(loc: list) -> str:
    """('messages', 2, 'role') -> 'messages[2].role'; pydantic's union member names are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part not in ("str", "int", "float", "bool", "list", "dict"):
            out += f".{part}" if out else part
    return out


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
