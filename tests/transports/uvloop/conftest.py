"""Every test in this folder runs on uvloop (pytest-asyncio's loop-factory hook)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

uvloop = pytest.importorskip("uvloop")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    return {"uvloop": uvloop.new_event_loop}
