"""YAML files as tailor reads them: safely, and refusing a key given twice in one mapping (which YAML itself
accepts, silently keeping the last)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(Exception):
    """The file cannot be read as YAML; str() says where (line) and why."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int):
        super().__init__(
            f"line {second}: key {key!r} is given twice in the same section (also on line {first}); "
            "YAML would silently keep only the last one: delete or merge one of them"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe YAML loader, refusing a mapping that names a key twice."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    lines: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = lines.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: the constructor reports it
            continue
        if first != key_node.start_mark.line + 1:
            raise _DuplicateKey(key, first, key_node.start_mark.line + 1)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_mapping_file(path: Path) -> Any:
    """The YAML document in `path` (None for an empty file); YamlFileError naming the line of any problem."""
    if not path.is_file():
        raise YamlFileError(f"file not found: {path} (give the path to a YAML config)")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise YamlFileError(str(e)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "context_mark", None) or getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise YamlFileError(f"{where}not valid YAML ({getattr(e, 'problem', e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise YamlFileError(f"cannot be read ({e})") from None
