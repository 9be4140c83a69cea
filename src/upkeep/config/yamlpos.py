"""YAML loading that remembers where every key and value stood in the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from upkeep.config.errors import KeyPath

# libyaml's composer when PyYAML was built with it (about 10x faster on large configs);
# both give nodes with the same line and column marks.
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Positions:
    """Line and column (1-based) of every key path in a document."""

    file: str
    _by_path: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    _keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    _quoted: set[KeyPath] = field(default_factory=set)

    def record(self, path: KeyPath, node: yaml.Node) -> None:
        """Given a key path and the YAML node found there, remember where the node starts
        (for a quoted scalar, where its opening quote is)."""
        self._by_path[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
            self._quoted.add(path)
        else:
            # A path is recorded at its key first, then at its value: the last one counts.
            self._quoted.discard(path)

    def value_offset(self, path: KeyPath) -> int:
        """Given a key path, return how many columns its value's text starts after the
        recorded position: 1 for a quoted scalar (the opening quote), else 0."""
        return 1 if tuple(path) in self._quoted else 0

    def record_key(self, path: KeyPath, node: yaml.Node) -> None:
        """Given a key path and its key node, remember where the key itself is written."""
        self._keys[path] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def find_key(self, path: KeyPath) -> tuple[int, int]:
        """Given a key path, return where its key is written (falling back to ``find``)."""
        return self._keys.get(tuple(path)) or self.find(path)

    def find(self, path: KeyPath) -> tuple[int, int]:
        """Given a key path, return the position of it or of its nearest recorded parent."""
        for length in range(len(path), -1, -1):
            found = self._by_path.get(tuple(path[:length]))
            if found:
                return found
        return (1, 1)


class YamlSyntaxError(Exception):
    """The text is not valid YAML; carries the position of the problem."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def _construct(
    node: yaml.Node, path: KeyPath, positions: Positions, scalars: yaml.constructor.SafeConstructor
) -> Any:
    positions.record(path, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in result:
                raise YamlSyntaxError(
                    f"duplicate key {key!r}",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            # A key's own position is where errors about the key (unknown, missing child) point.
            positions.record((*path, key), key_node)
            positions.record_key((*path, key), key_node)
            result[key] = _construct(value_node, (*path, key), positions, scalars)
            if not isinstance(value_node, yaml.ScalarNode):
                # Errors about a block point at its key, not at its first child.
                positions.record((*path, key), key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(item, (*path, index), positions, scalars)
            for index, item in enumerate(node.value)
        ]
    return scalars.construct_object(node, deep=True)


def load_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Given YAML text and its file name, return the data and the positions of every key.

    Raise ``YamlSyntaxError`` with the line and column if the text is not valid YAML or
    has a duplicate key (PyYAML silently keeps the last one; we refuse).
    """
    positions = Positions(file)
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlSyntaxError(str(error.problem or error), line, column) from error
    if node is None:
        return {}, positions
    # One constructor per document: it remembers every node it built, so a shared one
    # would keep old configs alive in a long-running daemon.
    return _construct(node, (), positions, yaml.constructor.SafeConstructor()), positions
