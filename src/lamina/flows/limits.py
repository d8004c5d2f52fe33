"""Limits that make a hostile flow file end in ConfigError quickly (docs/security.md).

* :data:`MAX_FLOW_BYTES`: checked on the file's size before reading it, and on text;
* :data:`MAX_FLOW_DEPTH`: nested lists and mappings, checked on the text *before* parsing
  (a bracket scan for JSON and TOML; a YAML loader that stops composing past the limit),
  and on the parsed data after (for dicts built in Python, TOML dotted keys and YAML
  aliases);
* :data:`MAX_FLOW_VALUES`: values in the flow (YAML nodes while composing; the
  substituted values of the parsed flow, aliases expanded).

With these a flow file just under the limits still loads in well under a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

from .._errors import ConfigError
from .env import MAX_VALUES

__all__ = [
    "MAX_FLOW_BYTES",
    "MAX_FLOW_DEPTH",
    "MAX_FLOW_VALUES",
    "BoundedYAMLLoader",
    "check_depth_text",
    "check_shape",
    "check_size_text",
]

MAX_FLOW_BYTES = 512 * 1024
"""The largest flow file (512 KiB: a few thousand endpoints)."""
MAX_FLOW_DEPTH = 64
"""The deepest nesting of lists and mappings in a flow (the top mapping is level 1)."""
MAX_FLOW_VALUES = MAX_VALUES
"""The most values (scalars, lists and mappings) a flow may hold: 100,000."""

try:  # libyaml's parser when PyYAML was built with it (4x faster), else PyYAML's own
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - wheels ship libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef,unused-ignore]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class BoundedYAMLLoader(Composer, _Parser, SafeConstructor, Resolver):
    """``yaml.SafeLoader`` semantics, composed by PyYAML's composer over (lib)yaml
    events with a depth and node budget: a 50,000-deep file stops at level 65 instead
    of recursing until ``RecursionError``. Use as ``yaml.load(text, BoundedYAMLLoader)``."""

    max_depth = MAX_FLOW_DEPTH
    max_nodes = MAX_FLOW_VALUES

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._merged = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._nodes += 1
        if self._nodes > self.max_nodes:
            raise _limit(f"holds more than {self.max_nodes} values", self.peek_event())
        if self._depth >= self.max_depth and self.check_event(
            SequenceStartEvent, MappingStartEvent
        ):
            raise _limit(f"nesting deeper than {self.max_depth} levels", self.peek_event())
        self._depth += 1
        try:
            node: Node | None = Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1
        return node

    def flatten_mapping(self, node: MappingNode) -> None:
        # ``<<: [*a, *a, ...]`` copies every pair of ``a`` per alias: 20,000 aliases of a
        # 1,000-key mapping took 6.5 s. Count the pairs before any is copied.
        for key, value in node.value:
            if key.tag != "tag:yaml.org,2002:merge":
                continue
            subs = value.value if isinstance(value, SequenceNode) else [value]
            self._merged += sum(len(sub.value) for sub in subs if isinstance(sub, MappingNode))
            if self._merged > self.max_nodes:
                raise _limit(f"holds more than {self.max_nodes} values (merge keys)", key)
        super().flatten_mapping(node)


class _FlowTooBig(yaml.YAMLError):
    """A limit of :class:`BoundedYAMLLoader` (turned into ConfigError by the loader)."""


def _limit(what: str, at: Any) -> _FlowTooBig:
    mark = getattr(at, "start_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return _FlowTooBig(f"{what}{where}")


def yaml_limit(exc: yaml.YAMLError) -> str | None:
    """The limit a YAML error reports, if it is one of ours (or libyaml's own depth cap)."""
    if isinstance(exc, _FlowTooBig):
        return str(exc)
    if "maximum nesting depth" in str(getattr(exc, "problem", "")):
        return f"nesting deeper than {MAX_FLOW_DEPTH} levels"
    return None


def check_size_text(text: str, source: str) -> None:
    """ConfigError if ``text`` is more than :data:`MAX_FLOW_BYTES` in UTF-8."""
    size = len(text)
    if size * 4 > MAX_FLOW_BYTES:  # only then can it be over: measure exactly
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FLOW_BYTES:
        raise too_large(source, size)


def too_large(source: str, size: int) -> ConfigError:
    return ConfigError(
        f"{source}: {size} bytes is more than a flow may hold ({MAX_FLOW_BYTES} bytes)",
        field=None,
    )


_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# The rest of a string after its opening quote, up to and with its closing quote. The
# quantifiers are possessive, so a string that never closes fails in one pass over it
# (no backtracking); the scan below starts each match once, so the whole check is linear.
_JSON_STRING_END = re.compile(r'(?:[^"\\]++|\\.)*+"', re.S)
_TOML_OPENING = re.compile(r'"""|\'\'\'|["\'#]')
_TOML_CLOSING: dict[str, re.Pattern[str] | None] = {
    '"': re.compile(r'(?:[^"\\\n]++|\\[^\n])*+"'),  # basic: one line, escapes
    "'": re.compile(r"[^'\n]*+'"),  # literal: one line, no escapes
    '"""': re.compile(r'(?:[^"\\]++|\\.|"(?!""))*+"{3,5}', re.S),  # up to 2 quotes inside
    "'''": re.compile(r"(?:[^']++|'(?!''))*+'{3,5}"),
    "#": None,  # a comment: to the end of the line
}
_MULTILINE = ('"""', "'''")


def _outside_strings(text: str, fmt: str) -> str:
    """``text`` without its strings (and TOML comments), in one pass. Where a string
    never closes the file is invalid and its parser says so: a JSON or multi-line TOML
    string that runs to the end stops the scan, a one-line TOML string skips its line."""
    pieces: list[str] = []
    pos = 0
    while True:
        if fmt == "json":
            start = text.find('"', pos)
            token = '"'
            after = start + 1
        else:
            found = _TOML_OPENING.search(text, pos)
            start, token = (found.start(), found.group()) if found else (-1, "")
            after = start + len(token)
        if start < 0:
            pieces.append(text[pos:])
            break
        pieces.append(text[pos:start])
        closing = _JSON_STRING_END if fmt == "json" else _TOML_CLOSING[token]
        end = closing.match(text, after) if closing is not None else None
        if end is not None:
            pos = end.end()
            continue
        if fmt == "json" or token in _MULTILINE:
            break  # runs to the end of the text
        line_end = text.find("\n", after)
        if line_end < 0:
            break
        pos = line_end

    return "".join(pieces)


def check_depth_text(text: str, fmt: str, source: str) -> None:
    """ConfigError if JSON or TOML ``text`` nests brackets deeper than
    :data:`MAX_FLOW_DEPTH` or holds more than :data:`MAX_FLOW_VALUES` values (strings and
    comments skipped), before any parser recurses or builds anything. Linear in the
    text's length, whatever it holds (512 KiB of escaped quotes: about 0.1 s)."""
    bare = _outside_strings(text, fmt)
    if bare.count(",") > MAX_FLOW_VALUES:  # every comma follows a value of its own
        raise too_many(source)
    brackets = _NOT_BRACKET.sub("", bare)
    deepest = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    # JSON's top-level object is one bracket; TOML's top-level table has none
    depth = deepest if fmt == "json" else deepest + 1
    if depth > MAX_FLOW_DEPTH:
        raise too_deep(source)


def too_many(source: str | None) -> ConfigError:
    return ConfigError(
        f"{source or 'the flow'}: holds more than {MAX_FLOW_VALUES} values", field=None
    )


def too_deep(source: str | None, where: str = "") -> ConfigError:
    return ConfigError(
        f"{source or 'the flow'}: nesting deeper than {MAX_FLOW_DEPTH} levels{where}",
        field=None,
    )


def _children(value: Any) -> Iterator[tuple[str | int, Any]] | None:
    if isinstance(value, Mapping):
        return iter(value.items())
    if isinstance(value, list | tuple):
        return enumerate(value)
    return None


def check_shape(data: Any, source: str | None = None) -> None:
    """ConfigError if ``data`` nests deeper than :data:`MAX_FLOW_DEPTH`, refers to itself
    (a YAML alias inside its own anchor), or holds more than :data:`MAX_FLOW_VALUES`
    values. Iterative and linear in the distinct values: shared (aliased) parts are
    measured once."""
    root = _children(data)
    if root is None:
        return
    height: dict[int, int] = {}  # id -> levels from that container down
    active = {id(data)}
    # frames: [container, its children, the tallest child seen, the current key]
    stack: list[list[Any]] = [[data, root, 0, None]]
    edges = 0
    while stack:
        frame = stack[-1]
        for key, child in frame[1]:
            frame[3] = key
            edges += 1
            if edges > MAX_FLOW_VALUES:
                raise too_many(source)
            kids = _children(child)
            if kids is None:
                continue
            cid = id(child)
            if cid in active:
                raise ConfigError(
                    f"{source or 'the flow'}: a value contains itself "
                    f"(a YAML alias inside its own anchor) at {_path(stack)}",
                    field=None,
                )
            known = height.get(cid)
            if known is not None:
                if len(stack) + known > MAX_FLOW_DEPTH:
                    raise too_deep(source, f" (at {_path(stack)})")
                frame[2] = max(frame[2], known)
                continue
            if len(stack) + 1 > MAX_FLOW_DEPTH:
                raise too_deep(source, f" (at {_path(stack)})")
            active.add(cid)
            stack.append([child, kids, 0, None])
            break
        else:
            stack.pop()
            active.discard(id(frame[0]))
            levels = frame[2] + 1
            height[id(frame[0])] = levels
            if stack:
                stack[-1][2] = max(stack[-1][2], levels)


def _path(stack: list[list[Any]], most: int = 4) -> str:
    parts = [frame[3] for frame in stack if frame[3] is not None]
    text = ""
    for part in parts[:most]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text + ("..." if len(parts) > most else "")
