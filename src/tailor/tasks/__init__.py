"""Tasks by name. Each module implements the Task protocol in tasks/base.py."""

from __future__ import annotations

from tailor.config import RunConfig, TaskConfig
from tailor.tasks.base import Task
from tailor.tasks.lm import LanguageModelling

TASKS: dict[str, type] = {"lm": LanguageModelling}


def build_task(cfg: TaskConfig, run: RunConfig) -> Task:
    """The task object for a task config."""
    return TASKS[cfg.type](cfg, run)
