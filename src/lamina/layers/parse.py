"""Turn a response into ``response.value``; refuse statuses and bodies that are wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import _validate as check
from .._core import Request, Response, Service, stack_repr
from .._errors import ConfigError, HTTPStatusError, ParseError
from .._redact import scrub_clip, secret_values
from ..transports._shared import DEFAULT_MAX_RESPONSE_BYTES

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "ParseLayer", "ParseService"]

SNIPPET_CHARS = 120

Parser = Callable[[Response], Any]
Transform = Callable[[Any], Any]


class ParseLayer:
    """Set ``response.value``: ``response_parser(response)`` if given, else JSON when
    the Content-Type says JSON, else text; then ``transform_output(value)``.

    A non-2xx status raises :class:`lamina.HTTPStatusError`; a body that does not
    parse raises :class:`lamina.ParseError` (endpoint, status, short redacted
    snippet). ``max_response_bytes`` is enforced by the transport while streaming.
    """

    __slots__ = ("max_response_bytes", "response_parser", "transform_output")

    def __init__(
        self,
        response_parser: Parser | None = None,
        transform_output: Transform | None = None,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if response_parser is not None and not callable(response_parser):
            raise ConfigError("must be callable", field="response_parser")
        if transform_output is not None and not callable(transform_output):
            raise ConfigError("must be callable", field="transform_output")
        self.response_parser = response_parser
        self.transform_output = transform_output
        self.max_response_bytes = check.size(max_response_bytes, "max_response_bytes")

    def wrap(self, inner: Service) -> Service:
        return ParseService(inner, self)

    def __repr__(self) -> str:
        return f"ParseLayer(max_response_bytes={self.max_response_bytes})"


class ParseService:
    """Service made by :class:`ParseLayer`."""

    __slots__ = ("config", "inner")

    def __repr__(self) -> str:
        return stack_repr(self)

    def __init__(self, inner: Service, config: ParseLayer) -> None:
        self.inner = inner
        self.config = config

    async def __call__(self, request: Request) -> Response:
        # The transport enforces the limit while streaming; extensions is per-call state.
        request.extensions["max_response_bytes"] = self.config.max_response_bytes
        response = await self.inner(request)
        if not response.is_success:
            raise HTTPStatusError.from_response(response)
        value = self._parse(request, response)
        if self.config.transform_output is not None:
            try:
                value = self.config.transform_output(value)
            except Exception as exc:
                raise _parse_error(
                    f"transform_output failed: {type(exc).__name__}", request, response
                ) from exc
        response.value = value
        return response

    def _parse(self, request: Request, response: Response) -> Any:
        parser = self.config.response_parser
        if parser is not None:
            try:
                return parser(response)
            except Exception as exc:
                raise _parse_error(
                    f"response_parser failed: {type(exc).__name__}", request, response
                ) from exc
        content = response.content
        if not content:
            return None
        kind = _body_kind(response.headers.get("content-type", ""))
        if kind is TEXT:
            return response.text
        try:
            if kind is JSON_WITH_PARAMS:  # a charset may be named: let Response decide
                return response.json()
            return _json_loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _parse_error("body is not valid JSON", request, response) from exc


TEXT, JSON, JSON_WITH_PARAMS = "text", "json", "json with parameters"
_BODY_KINDS: dict[str, str] = {}  # by Content-Type value: a service sees few of them
_MAX_BODY_KINDS = 256


def _body_kind(content_type: str) -> str:
    """How a body of this Content-Type parses: :data:`TEXT`, :data:`JSON` or
    :data:`JSON_WITH_PARAMS` (worked out once per value)."""
    kind = _BODY_KINDS.get(content_type)
    if kind is not None:
        return kind
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        kind = JSON_WITH_PARAMS if params else JSON
    else:
        kind = TEXT
    if len(_BODY_KINDS) >= _MAX_BODY_KINDS:
        _BODY_KINDS.clear()
    _BODY_KINDS[content_type] = kind
    return kind


def _json_loads(content: bytes) -> Any:
    """``json.loads`` of a non-empty body with no declared charset: UTF-8 decoded
    directly and scanned by json's C scanner (the common case, a fraction of
    ``json.loads``' cost), else json's own decoder, which gives the same value or error
    (UTF-16/32 and a BOM, which it detects; whitespace around the value; extra data)."""
    first = content[0]
    if first == 0 or first >= 0x80 or (len(content) > 1 and content[1] == 0):
        return json.loads(content)  # UTF-16/32 (a NUL among the first bytes), a BOM
    text = content.decode("utf-8")
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: the decoder says which
        return _DECODER.decode(text)
    if end != len(text):  # trailing whitespace, or extra data
        return _DECODER.decode(text)
    return value


_DECODER = json.JSONDecoder()
#: json's C scanner (it forgets its key memo after each call)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _parse_error(message: str, request: Request, response: Response) -> ParseError:
    snippet = response.content[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    snippet = scrub_clip(snippet, secret_values(request), SNIPPET_CHARS)  # scrub, then cut
    return ParseError(
        message,
        request=request,
        status_code=response.status_code,
        snippet=snippet,
    )


Parse = ParseService  # deprecated: the name before issue 15, kept for imports
