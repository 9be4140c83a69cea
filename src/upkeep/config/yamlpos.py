"""YAML loading that remembers where every key and value stood in the file, within bounds.

The document is built from the parser's event stream by a composer of our own, without
recursion, so that every limit holds *while* reading, before anything grows:

* nesting is at most ``MAX_DEPTH`` levels, counted after aliases are put in place;
* an alias (``*name``) may not refer to the node that contains it (``a: &a [*a]``);
* a single value is at most ``MAX_SCALAR_CHARS`` characters;
* all aliases together may repeat at most ``MAX_ALIAS_NODES`` nodes, so a "billion
  laughs" document is refused after reading its few hundred bytes, not after building
  its billion strings. Ordinary anchors and merge keys (``<<: *defaults``) stay well
  inside that budget;
* only the plain YAML types are built (text, integers, floats, booleans, null,
  timestamps, lists and mappings); a tag asking for anything else is an error, an
  integer must fit in 64 bits and a float must be finite.

Every refusal is a ``YamlSyntaxError`` with the line and column it concerns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from upkeep.config.errors import KeyPath

# libyaml's parser when PyYAML was built with it (several times faster on large configs);
# both give events with the same line and column marks.
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 64
"""The deepest nesting of lists and mappings a config may have (aliases included)."""
MAX_ALIAS_NODES = 100_000
"""How many nodes all aliases of a document may repeat together."""
MAX_SCALAR_CHARS = 64 * 1024
"""The longest single value (or key) a config may hold, in characters; fields with a
narrower meaning (conditions, schedules, patterns) have narrower bounds of their own."""
INTEGER_LIMIT = 2**63 - 1
"""The largest integer (in magnitude) a config may hold: what a 64-bit store column takes."""
_INTEGER_DIGITS = 64  # more digits than any in-range integer has, in any base YAML allows

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _MERGE, _SEQ, _MAP = (
    f"{_TAG}{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "merge", "seq", "map")
)
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _MERGE})


class _Node:
    """A composed YAML node: a scalar's text or a collection's children, with its position,
    how many nodes it stands for once aliases are expanded, and how deep it nests."""

    __slots__ = ("children", "closed", "column", "height", "kind", "line", "quoted", "size", "tag")

    def __init__(self, kind: str, tag: str, line: int, column: int) -> None:
        self.kind = kind  # "scalar", "sequence" or "mapping"
        self.tag = tag
        self.line = line
        self.column = column
        self.quoted = False
        self.children: list[_Node] | str = "" if kind == "scalar" else []
        self.size = 1
        self.height = 0 if kind == "scalar" else 1  # levels of lists and mappings
        self.closed = kind == "scalar"


@dataclass
class Positions:
    """Line and column (1-based) of every key path in a document."""

    file: str
    _by_path: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    _keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    _quoted: set[KeyPath] = field(default_factory=set)

    def record(self, path: KeyPath, node: _Node) -> None:
        """Given a key path and the YAML node found there, remember where the node starts
        (for a quoted scalar, where its opening quote is)."""
        self._by_path[path] = (node.line, node.column)
        if node.quoted:
            self._quoted.add(path)
        else:
            # A path is recorded at its key first, then at its value: the last one counts.
            self._quoted.discard(path)

    def value_offset(self, path: KeyPath) -> int:
        """Given a key path, return how many columns its value's text starts after the
        recorded position: 1 for a quoted scalar (the opening quote), else 0."""
        return 1 if tuple(path) in self._quoted else 0

    def record_key(self, path: KeyPath, node: _Node) -> None:
        """Given a key path and its key node, remember where the key itself is written."""
        self._keys[path] = (node.line, node.column)

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
    """The text is not valid YAML, or goes past a limit; carries the position of the
    problem. The message is complete (``not valid YAML: ...`` for syntax)."""

    def __init__(self, message: str, line: int, column: int, path: KeyPath = ()) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.path = path


def _at(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _position_in_text(text: str, index: int) -> tuple[int, int]:
    """Given a character index into the text, return its 1-based line and column."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _syntax_error(error: yaml.YAMLError, text: str) -> YamlSyntaxError:
    if isinstance(error, yaml.MarkedYAMLError):
        line, column = _at(error.problem_mark or error.context_mark)
        return YamlSyntaxError(f"not valid YAML: {error.problem or error}", line, column)
    position = getattr(error, "position", None)  # a ReaderError: a character we refuse
    line, column = _position_in_text(text, position) if isinstance(position, int) else (1, 1)
    reason = getattr(error, "reason", None) or str(error).splitlines()[0]
    return YamlSyntaxError(f"not valid YAML: {reason}", line, column)


_CACHED_LENGTH = 64  # plain scalars up to this long have their resolved tag remembered


def _unsupported(tag: str, mark: Any) -> YamlSyntaxError:
    return YamlSyntaxError(
        f"the tag {tag!r} is not supported here; a config holds only text, numbers, "
        "booleans, null, timestamps, lists and mappings",
        *_at(mark),
    )


class _Composer:
    """Builds ``_Node`` trees from parser events with an explicit stack and the limits."""

    def __init__(self) -> None:
        self.resolver: Any = yaml.resolver.Resolver()  # typed loosely by types-PyYAML
        self.anchors: dict[str, _Node] = {}
        self.stack: list[_Node] = []
        self.root: _Node | None = None
        self.documents = 0
        self.alias_nodes = 0
        self._plain_tags: dict[str, str] = {}

    def feed(self, event: yaml.Event) -> None:
        kind = type(event)
        if isinstance(event, yaml.ScalarEvent):  # the most frequent event first
            self._scalar(event)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            node = self._open(
                "mapping" if kind is yaml.MappingStartEvent else "sequence",
                event,
            )
            if len(self.stack) >= MAX_DEPTH:
                raise YamlSyntaxError(
                    f"the config nests deeper than {MAX_DEPTH} levels of lists and mappings",
                    node.line,
                    node.column,
                )
            self.stack.append(node)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            node = self.stack.pop()
            node.closed = True
            self._attach(node)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif kind is yaml.DocumentStartEvent:
            self.documents += 1
            if self.documents > 1:
                raise YamlSyntaxError(
                    "not valid YAML: a config is one document; found a second one (---)",
                    *_at(event.start_mark),
                )
            self.anchors.clear()

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        tag = event.tag
        value = event.value
        if tag is None or tag == "!":
            if event.implicit[0] and len(value) <= _CACHED_LENGTH:
                # Plain scalars repeat (keys above all); their tag depends on the text only.
                tag = self._plain_tags.get(value)
                if tag is None:
                    tag = self._plain_tags[value] = self.resolver.resolve(
                        yaml.ScalarNode, value, event.implicit
                    )
            else:
                tag = self.resolver.resolve(yaml.ScalarNode, value, event.implicit)
        mark: Any = event.start_mark
        if tag not in _SCALAR_TAGS:
            raise _unsupported(tag, mark)
        node = _Node("scalar", tag, mark.line + 1, mark.column + 1)
        node.children = value
        node.quoted = event.style in ("'", '"')
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        self._attach(node)

    def _open(self, kind: str, event: Any) -> _Node:
        line, column = _at(event.start_mark)
        tag = event.tag
        if tag is None or tag == "!":
            node_type = yaml.MappingNode if kind == "mapping" else yaml.SequenceNode
            tag = self.resolver.resolve(node_type, None, event.implicit)
        if tag != (_MAP if kind == "mapping" else _SEQ):
            raise _unsupported(tag, event.start_mark)
        node = _Node(kind, tag, line, column)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def _alias(self, event: yaml.AliasEvent) -> None:
        line, column = _at(event.start_mark)
        node = self.anchors.get(str(event.anchor))
        if node is None:
            raise YamlSyntaxError(
                f"not valid YAML: alias *{event.anchor} names no anchor (&{event.anchor}) above it",
                line,
                column,
            )
        if not node.closed:
            raise YamlSyntaxError(
                f"alias *{event.anchor} is inside the node it names (&{event.anchor}): "
                "a recursive alias never ends",
                line,
                column,
            )
        self.alias_nodes += node.size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise YamlSyntaxError(
                f"aliases repeat more than {MAX_ALIAS_NODES:,} nodes in all (at *{event.anchor}); "
                "a config this repetitive is refused",
                line,
                column,
            )
        if len(self.stack) + node.height > MAX_DEPTH:
            raise YamlSyntaxError(
                f"alias *{event.anchor} makes the config nest deeper than {MAX_DEPTH} levels",
                line,
                column,
            )
        self._attach(node)

    def _attach(self, node: _Node) -> None:
        if not self.stack:
            self.root = node
            return
        parent = self.stack[-1]
        children = parent.children
        if isinstance(children, list):
            children.append(node)
        parent.size += node.size
        if node.height >= parent.height:
            parent.height = node.height + 1


_MERGE_SHAPE = "<< merges a mapping or a list of mappings into this one"


def _pairs(node: _Node) -> list[tuple[_Node, _Node]]:
    """Given a mapping node, return its key and value nodes with merge keys (``<<``)
    applied: written keys win over merged ones, and earlier merged mappings over later."""
    children = node.children
    if not isinstance(children, list):  # pragma: no cover - a mapping's children are a list
        return []
    written: list[tuple[_Node, _Node]] = []
    merged: list[tuple[_Node, _Node]] = []
    for index in range(0, len(children) - 1, 2):
        key_node, value_node = children[index], children[index + 1]
        if key_node.tag != _MERGE:
            written.append((key_node, value_node))
            continue
        sources = value_node.children if value_node.kind == "sequence" else [value_node]
        for source in sources:
            if not isinstance(source, _Node) or source.kind != "mapping":
                raise YamlSyntaxError(_MERGE_SHAPE, value_node.line, value_node.column)
            merged.extend(_pairs(source))
    if not merged:
        return written
    chosen: dict[str, tuple[_Node, _Node]] = {}
    for key_node, value_node in merged:
        chosen.setdefault(_key_text(key_node), (key_node, value_node))
    written_keys = {_key_text(key_node) for key_node, _ in written}
    return [pair for key, pair in chosen.items() if key not in written_keys] + written


def _key_text(node: _Node) -> str:
    if node.kind != "scalar" or not isinstance(node.children, str):
        raise YamlSyntaxError(
            f"a key must be a plain value such as a name, not a {node.kind}", node.line, node.column
        )
    if len(node.children) > MAX_SCALAR_CHARS:
        raise YamlSyntaxError(
            f"a key is at most {MAX_SCALAR_CHARS // 1024} Ki characters", node.line, node.column
        )
    return node.children


_SCALARS = yaml.constructor.SafeConstructor()


def _scalar(node: _Node) -> Any:
    """Given a scalar node, return its value: text, int, float, bool, None or a timestamp."""
    text = node.children if isinstance(node.children, str) else ""
    if len(text) > MAX_SCALAR_CHARS:
        raise YamlSyntaxError(
            f"a value is at most {MAX_SCALAR_CHARS // 1024} Ki characters; this one has "
            f"{len(text):,}",
            node.line,
            node.column,
        )
    if node.tag in (_STR, _MERGE):
        return text
    if node.tag == _NULL:
        return None
    if node.tag == _BOOL:
        return _SCALARS.bool_values.get(text.lower(), bool(text))
    kind = {_INT: "integer", _FLOAT: "number"}.get(node.tag, "timestamp")
    if node.tag == _INT and sum(character.isdigit() for character in text) > _INTEGER_DIGITS:
        # Refused before conversion: Python's own limit on long digit strings says less.
        raise _integer_too_large(text, node)
    try:
        if node.tag == _INT:
            value: Any = _SCALARS.construct_yaml_int(yaml.ScalarNode(node.tag, text))
        elif node.tag == _FLOAT:
            value = _SCALARS.construct_yaml_float(yaml.ScalarNode(node.tag, text))
        else:
            value = _SCALARS.construct_yaml_timestamp(yaml.ScalarNode(node.tag, text))
    except (ValueError, OverflowError, TypeError, KeyError, IndexError) as error:
        reason = str(error).split(":", 1)[0] if node.tag == _TIMESTAMP else ""
        raise YamlSyntaxError(
            f"{_short(text)} is not a valid {kind}{f' ({reason})' if reason else ''}",
            node.line,
            node.column,
        ) from None
    if isinstance(value, int) and not -INTEGER_LIMIT <= value <= INTEGER_LIMIT:
        raise _integer_too_large(text, node)
    if isinstance(value, float) and not math.isfinite(value):
        raise YamlSyntaxError(f"{_short(text)} is not a finite number", node.line, node.column)
    return value


def _integer_too_large(text: str, node: _Node) -> YamlSyntaxError:
    return YamlSyntaxError(
        f"the integer {_short(text)} is too large; integers go up to {INTEGER_LIMIT:,}",
        node.line,
        node.column,
    )


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


def _construct(node: _Node, path: KeyPath, positions: Positions) -> Any:
    # Recursion is bounded: the composer refused anything nesting deeper than MAX_DEPTH.
    positions.record(path, node)
    if node.kind == "mapping":
        result: dict[str, Any] = {}
        for key_node, value_node in _pairs(node):
            key = _key_text(key_node)
            if key in result:
                raise YamlSyntaxError(
                    f"not valid YAML: duplicate key {key!r}", key_node.line, key_node.column
                )
            # A key's own position is where errors about the key (unknown, missing child) point.
            positions.record((*path, key), key_node)
            positions.record_key((*path, key), key_node)
            result[key] = _construct(value_node, (*path, key), positions)
            if value_node.kind != "scalar":
                # Errors about a block point at its key, not at its first child.
                positions.record((*path, key), key_node)
        return result
    if node.kind == "sequence":
        items = node.children if isinstance(node.children, list) else []
        return [_construct(item, (*path, index), positions) for index, item in enumerate(items)]
    try:
        return _scalar(node)
    except YamlSyntaxError as error:
        raise YamlSyntaxError(str(error), error.line, error.column, path) from None


def load_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Given YAML text and its file name, return the data and the positions of every key.

    Raise ``YamlSyntaxError`` with the line and column if the text is not valid YAML, has
    a duplicate key (PyYAML silently keeps the last one; we refuse), or goes past one of
    the limits above (depth, recursive or excessive aliases, unsupported tags, numbers
    out of range).
    """
    positions = Positions(file)
    composer = _Composer()
    try:
        for event in yaml.parse(text, Loader=_PARSER):
            composer.feed(event)
    except yaml.YAMLError as error:
        raise _syntax_error(error, text) from None
    if composer.root is None:
        return {}, positions
    return _construct(composer.root, (), positions), positions
