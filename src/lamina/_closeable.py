"""``async with`` for anything that has ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncCloseable:
    """Mixin: ``async with obj:`` closes ``obj`` with ``await obj.aclose()`` on exit."""

    async def aclose(self) -> None:
        """Release what this object holds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
