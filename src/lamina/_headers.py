"""A small case-insensitive, multi-valued header map independent of any transport."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, Union, overload

from ._redact import redact_headers

T = TypeVar("T")

HeaderSource = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]


class Headers(Mapping[str, str]):
    """Case-insensitive header mapping that keeps repeated fields.

    ``headers["set-cookie"]`` joins repeated values with ``", "``;
    :meth:`get_list` returns them one by one.
    """

    __slots__ = ("_items",)

    def __init__(self, source: HeaderSource = None) -> None:
        if source is None:
            self._items: list[tuple[str, str]] = []
        elif type(source) is dict:  # the common case, before the slower ABC check
            self._items = [(str(k), str(v)) for k, v in source.items()]
        elif isinstance(source, Headers):
            self._items = list(source._items)
        elif isinstance(source, Mapping):
            self._items = [(str(k), str(v)) for k, v in source.items()]
        else:
            self._items = [(str(k), str(v)) for k, v in source]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> Headers:
        """Take a fresh list of ``(str, str)`` pairs as is (a transport's own headers)."""
        headers = cls.__new__(cls)
        headers._items = pairs
        return headers

    def __getitem__(self, name: str) -> str:
        values = self.get_list(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    @overload
    def get(self, name: str, default: T) -> str | T: ...

    def get(self, name: str, default: object = None) -> object:  # fast path: no exception
        """The value of ``name`` (repeated fields joined by ", "), or ``default``."""
        lowered = name.lower()
        if not lowered.isascii():
            values = self.get_list(name)
            return default if not values else ", ".join(values)
        size = len(lowered)
        found: str | None = None
        more: list[str] | None = None
        for k, v in self._items:
            # most names differ in length: skip lowering them (an ASCII name's length
            # is its lowered length; only "İ" lowers longer, never into ASCII)
            if len(k) == size and k.lower() == lowered:
                if found is None:
                    found = v
                elif more is None:
                    more = [found, v]
                else:
                    more.append(v)
        if more is not None:
            return ", ".join(more)
        return default if found is None else found

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lowered = name.lower()
        if not lowered.isascii():
            return [v for k, v in self._items if k.lower() == lowered]
        size = len(lowered)
        return [v for k, v in self._items if len(k) == size and k.lower() == lowered]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._items:
            lowered = k.lower()
            if lowered not in seen:
                seen.add(lowered)
                yield k

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._items})

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lowered = name.lower()
        if not lowered.isascii():
            return any(k.lower() == lowered for k, _ in self._items)
        size = len(lowered)
        return any(len(k) == size and k.lower() == lowered for k, _ in self._items)

    def multi_items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs, repeated names included."""
        return list(self._items)

    def copy_with(
        self, updates: Mapping[str, str] | None = None, remove: Iterable[str] = ()
    ) -> Headers:
        """A copy with ``updates`` set (replacing) and ``remove`` names dropped."""
        drop = {n.lower() for n in remove}
        if updates:
            drop |= {n.lower() for n in updates}
        new = Headers([(k, v) for k, v in self._items if k.lower() not in drop])
        if updates:
            new._items.extend((str(k), str(v)) for k, v in updates.items())
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            other_headers = other if isinstance(other, Headers) else Headers(other)
            return sorted((k.lower(), v) for k, v in self._items) == sorted(
                (k.lower(), v) for k, v in other_headers._items
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({redact_headers(self._items)!r})"
