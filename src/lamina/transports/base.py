"""The transport contract: the `Transport` protocol and `BaseTransport`, which keeps it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import Any, Literal, Protocol

from .. import _validate as check
from .._closeable import AsyncCloseable
from .._core import Request, Response
from ._shared import InFlightGate, origin, send

__all__ = ["BaseTransport", "Transport"]


class Transport(Protocol):
    """The innermost service of a stack: sends a request over the network and answers
    with a :class:`lamina.Response`, or raises an error of lamina's tree (the client's
    exception chained); ``aclose()`` releases its connections."""

    async def __call__(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


class BaseTransport(AsyncCloseable, ABC):
    """The contract every lamina transport keeps, implemented once: the header check,
    redirects (off unless ``follow_redirects``, credentials dropped when the origin
    changes, at most ``max_redirects``), the body limit (``max_response_bytes``,
    overridable per call with ``request.extensions["max_response_bytes"]``) and the
    in-flight gate (``max_in_flight``: an int, None for no gate, or ``"pool"`` for the
    client's ``pool`` size). A client that also limits its connections per host
    (``per_host``) gets a gate per (scheme, host, port) of that size as well, at most
    ``max_in_flight`` (``max_in_flight_per_host``; none when ``max_in_flight`` is None).

    A subclass sends one request, no redirect followed, with ``_send_now(request)``.
    """

    def __init__(
        self,
        *,
        follow_redirects: bool,
        max_redirects: int,
        max_response_bytes: int,
        max_in_flight: int | Literal["pool"] | None,
        pool: int | None,
        per_host: int | None = None,
    ) -> None:
        self.follow_redirects = check.flag(follow_redirects, "follow_redirects")
        self.max_redirects = check.count(max_redirects, "max_redirects", low=0)
        self.max_response_bytes = check.size(max_response_bytes, "max_response_bytes")
        gated = max_in_flight is not None
        if max_in_flight == "pool":
            max_in_flight = pool
        elif max_in_flight is not None:
            max_in_flight = check.count(max_in_flight, "max_in_flight")
        self.max_in_flight = max_in_flight
        self._gate = InFlightGate(max_in_flight) if max_in_flight is not None else None
        if not gated or not per_host:
            per_host = None
        elif max_in_flight is not None:
            per_host = min(per_host, max_in_flight)
        self.max_in_flight_per_host = per_host
        self._host_gates: dict[tuple[str, str, int | None], InFlightGate] = {}

    def __call__(self, request: Request) -> Coroutine[Any, Any, Response]:
        # The coroutine of send() itself, not one of ours awaiting it: one frame fewer
        # for every suspension of the call to pass through.
        send_once = self._send_once if self.max_in_flight_per_host is None else self._per_host
        return send(send_once, request, self.follow_redirects, self.max_redirects)

    async def _per_host(self, request: Request) -> Response:
        """Wait in the gate of the request's host, then in the pool's."""
        key = origin(request.url)
        gates = self._host_gates
        gate = gates.get(key)
        if gate is None:
            assert self.max_in_flight_per_host is not None
            gate = gates[key] = InFlightGate(self.max_in_flight_per_host)
        gate.users += 1
        try:
            return await gate.send(self._send_once, request)
        finally:
            gate.users -= 1
            if not gate.users and gates.get(key) is gate:  # idle: forget the host
                del gates[key]

    def _send_once(self, request: Request) -> Coroutine[Any, Any, Response]:
        gate = self._gate
        if gate is None:
            return self._send_now(request)
        return gate.send(self._send_now, request)

    @abstractmethod
    async def _send_now(self, request: Request) -> Response:
        """Send ``request`` once, following no redirect."""
