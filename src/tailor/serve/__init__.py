"""Serve a run over HTTP: OpenAI's chat and completions API, plus /v1/classify and /v1/answer.

from tailor.serve import create_app, ServeSettings
app = create_app("runs/support-bot-003", ServeSettings(api_key="secret"))
"""

from tailor.serve.app import create_app
from tailor.serve.service import ServeSettings

__all__ = ["create_app", "ServeSettings"]
