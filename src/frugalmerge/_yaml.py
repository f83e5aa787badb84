"""YAML reading shared by the stages: PyYAML's safe loader, but a repeated key is an error.

PyYAML keeps the last of two equal keys without a word; in a merge recipe or a search config a
second ``parameters:`` block then silently replaced the first.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["UniqueKeyLoader", "safe_load_unique", "yaml_error_text"]


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load`` with repeated keys refused (:class:`yaml.YAMLError`, with the line)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """``invalid YAML (line N): problem`` in one line (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"invalid YAML{where}: {what}"
