"""Every shipped recipe in examples/ is a valid config (its keys, values and per-task settings)."""

from pathlib import Path

import pytest

from tailor.config import load_config
from tailor.pretrain import load_pretrain_config

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


def test_there_are_recipes():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_recipe_validates(path):
    if path.name.startswith("pretrain"):
        cfg = load_pretrain_config(path)
        assert cfg.arch.n_layer > 0
        return
    cfg = load_config(path)
    assert cfg.train.lr and cfg.train.metric and cfg.data.train or cfg.task.tasks
