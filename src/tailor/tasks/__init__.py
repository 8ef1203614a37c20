"""Tasks by name. Each module implements the Task protocol in tasks/base.py."""

from __future__ import annotations

from collections.abc import Callable

from tailor.config import RunConfig, TaskConfig
from tailor.tasks.base import Task
from tailor.tasks.chat import ChatTask
from tailor.tasks.classification import Classification, Regression
from tailor.tasks.lm import LanguageModelling
from tailor.tasks.multitask import MultiTask
from tailor.tasks.qa import question_answering

TASKS: dict[str, Callable[..., Task]] = {"lm": LanguageModelling, "classification": Classification, "regression": Regression}
TASKS["chat"] = ChatTask
TASKS["qa"] = question_answering  # extractive or generative, by task.qa_mode


def build_task(cfg: TaskConfig, run: RunConfig) -> Task:
    """The task object for a task config (multitask: its sub-tasks built the same way, by name)."""
    if cfg.type == "multitask":
        return MultiTask(cfg, {sub.name: build_task(sub, run) for sub in cfg.tasks})
    return TASKS[cfg.type](cfg, run)
