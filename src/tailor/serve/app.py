"""The HTTP app: one run behind OpenAI's endpoints, /v1/classify and /v1/answer, with OpenAI's error bodies.

    app = create_app("runs/support-bot-003")          # a FastAPI app: mount it, or run it with uvicorn
    uvicorn.run(app, host="127.0.0.1", port=8000)      # what `tailor serve` does

One worker thread owns the model (batching.py); handlers only validate, tokenise and wait, so the
event loop stays free for other clients while a batch runs.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tailor.serve.routes import add_routes
from tailor.serve.schemas import APIError, validation_error
from tailor.serve.service import ENDPOINTS, ServeSettings, Service
from tailor.use import Loaded, open_run

TASK_ENDPOINTS = [e for paths in ENDPOINTS.values() for e in paths]


def create_app(
    run: Loaded | str | Path,
    settings: ServeSettings | None = None,
    task: str | None = None,
    name: str | None = None,
) -> FastAPI:
    """A FastAPI app serving `run`: a run directory, any model directory, or a run opened with open_run.

    `task` picks a multitask run's sub-task; `name` is the model id clients see (default: the directory's name).
    """
    loaded = run if isinstance(run, Loaded) else open_run(run, task)
    name = name or (Path(run).resolve().name if not isinstance(run, Loaded) else "tailor")
    service = Service(loaded, settings or ServeSettings(), name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.batcher.stop()

    app = FastAPI(
        title="tailor", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = service
    _add_error_handlers(app, service)
    app.add_middleware(_KeyCheck, key=service.settings.api_key)

    _add_info_routes(app, service)
    add_routes(app, service)
    return app


def _add_info_routes(app: FastAPI, service: Service) -> None:
    """/health (no key needed), /v1/models and /v1/models/{id}."""

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": service.name,
            "task": service.task,
            **service.batcher.stats(),
        }

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [_model_card(service)]}

    @app.get("/v1/models/{model_id}")
    def model(model_id: str) -> dict:
        if model_id != service.name:
            message = f"no model {model_id!r}; this server serves {service.name!r}"
            raise APIError(404, message, param="model", code="model_not_found")
        return _model_card(service)


def _model_card(service: Service) -> dict:
    return {
        "id": service.name,
        "object": "model",
        "created": service.created,
        "owned_by": "tailor",
        "task": service.task,
        "endpoints": service.endpoints,
    }


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    """Every error as OpenAI's body; a task endpoint the run does not serve names those it does."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return await api_error(request, validation_error(list(e.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        path = _route_path(request.scope)
        if e.status_code in (404, 405) and path in TASK_ENDPOINTS and path not in service.endpoints:
            message = (
                f"this run (task {service.task}) does not serve {path}; it serves: "
                f"{', '.join(service.endpoints)}"
            )
            return await api_error(request, APIError(404, message, code="unsupported_endpoint"))
        messages = {404: f"no endpoint {path}", 405: f"{request.method} is not allowed on {path}"}
        return await api_error(
            request, APIError(e.status_code, messages.get(e.status_code, str(e.detail)))
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:
        error = APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error")
        return await api_error(request, error)


class _KeyCheck:
    """401 for /v1/* without `Authorization: Bearer KEY` (plain ASGI, so streaming is untouched)."""

    def __init__(self, app, key: str | None):
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send) -> None:
        if self.key and scope["type"] == "http" and _route_path(scope).startswith("/v1"):
            given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not secrets.compare_digest(
                given.removeprefix("Bearer ").strip().encode(), self.key.encode()
            ):
                error = APIError(
                    401,
                    "incorrect or missing API key: send the header 'Authorization: Bearer KEY' "
                    "with the key the server was started with",
                    code="invalid_api_key",
                )
                await JSONResponse(error.body(), status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Mapping[str, Any]) -> str:
    """The path inside this app (without the prefix it is mounted under)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
