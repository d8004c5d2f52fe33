"""RequestIdLayer: tag every call with a request id header (a lamina layer plugin)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from lamina import ConfigError, Request, Response, Service

__all__ = ["EXTENSION_KEY", "RequestId", "RequestIdLayer"]

#: Where the id is kept on the request, so retries below this layer reuse it.
EXTENSION_KEY = "lamina_request_id"


def _new_id() -> str:
    return uuid.uuid4().hex


class RequestIdLayer:
    """Set ``header`` to ``prefix`` + a fresh id (uuid4 hex, or ``generator()``).

    One id per call: retries keep it, unless ``per_attempt`` is true. A header the
    caller already set is kept unless ``overwrite`` is true. Does no I/O.
    """

    __slots__ = ("generator", "header", "overwrite", "per_attempt", "prefix")

    def __init__(
        self,
        header: str = "X-Request-ID",
        *,
        prefix: str = "",
        per_attempt: bool = False,
        overwrite: bool = False,
        generator: Callable[[], str] | None = None,
    ) -> None:
        if not isinstance(header, str) or not header.strip() or any(c in header for c in " :\r\n"):
            raise ConfigError(f"must be a header name, got {header!r}", field="header")
        if not isinstance(prefix, str):
            raise ConfigError(f"must be a string, got {prefix!r}", field="prefix")
        if generator is not None and not callable(generator):
            raise ConfigError("must be callable", field="generator")
        self.header = header
        self.prefix = prefix
        self.per_attempt = bool(per_attempt)
        self.overwrite = bool(overwrite)
        self.generator = generator or _new_id

    def wrap(self, inner: Service) -> Service:
        return RequestId(inner, self)

    def __repr__(self) -> str:
        return f"RequestIdLayer(header={self.header!r}, prefix={self.prefix!r})"


class RequestId:
    """Service made by :class:`RequestIdLayer`."""

    __slots__ = ("config", "inner")

    def __init__(self, inner: Service, config: RequestIdLayer) -> None:
        self.inner = inner
        self.config = config

    async def __call__(self, request: Request) -> Response:
        config = self.config
        if config.header in request.headers and not config.overwrite:
            return await self.inner(request)
        request_id = None if config.per_attempt else request.extensions.get(EXTENSION_KEY)
        if request_id is None:
            request_id = config.prefix + config.generator()
            request.extensions[EXTENSION_KEY] = request_id
        headers = request.headers.copy_with({config.header: request_id})
        return await self.inner(request.replace(headers=headers))
