"""tailor: fine-tune pre-trained GPT-style language models for your task."""

__version__ = "0.1.0"


def train(cfg):  # noqa: ANN001 - lazy import keeps `import tailor` and `tailor --help` fast
    """Fine-tune as configured (a RunConfig); returns a Run."""
    from tailor.api import train as _train

    return _train(cfg)
