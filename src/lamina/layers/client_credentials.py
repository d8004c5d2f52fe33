"""OAuth 2.0 client credentials (RFC 6749, section 4.4) as a layer.

:class:`ClientCredentialsLayer` fetches an access token from a token URL, keeps it
until shortly before it expires, refreshes it once for any number of concurrent
callers, sets ``Authorization: Bearer ...`` on every call it wraps, and retries a
call once with a fresh token when the upstream answers 401. The token request
goes through a stack of its own (a timeout and a retry by default). With a Redis
backend, every process using the same token URL, client and scope shares one token
and one refresh.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Layer, Request, Response, Service, ServiceBuilder
from .._errors import ConfigError, HTTPStatusError, LaminaError, TimeoutError
from .._events import emit
from .._redact import redact_url, scrub
from .retry import RetryLayer, RetryOutcome, StatusRetryPolicy
from .timeout import TimeoutLayer

if TYPE_CHECKING:
    from ..backends.redis_connection import RedisConnection
    from ..transports.base import Transport

__all__ = [
    "ClientCredentialsLayer",
    "ClientCredentialsService",
    "Token",
    "TokenError",
    "default_token_layers",
]

logger = logging.getLogger("lamina")

AUTH_METHODS = ("basic", "post")
#: Events this layer reports on the call (and so on its span and in metrics).
FETCHED = "auth.token_fetched"
REFRESHED_AFTER_401 = "auth.token_rejected"
#: An early renewal failed and the call used the unexpired token it held (``error``).
REFRESH_FAILED = "auth.token_refresh_failed"


class TokenError(LaminaError):
    """The token endpoint did not give a usable access token.

    ``status_code`` is the token endpoint's status (``None`` when it was not reached
    or answered 2xx with an unusable body); ``error`` is the OAuth ``error`` code it
    returned (``invalid_client``, ``invalid_scope``...), when it gave one. Neither the
    client secret nor any token is ever part of the message.
    """

    def __init__(
        self,
        message: str,
        *,
        token_url: str,
        status_code: int | None = None,
        error: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.token_url = token_url = redact_url(token_url)  # a key in its query stays out
        self.status_code = status_code
        self.error = error
        super().__init__(f"{message} (token endpoint {token_url})", endpoint=endpoint)


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """An access token and when it expires, on the layer's clock (seconds)."""

    access_token: str = dataclasses.field(repr=False)
    token_type: str
    expires_at: float
    scope: str | None = None
    refresh_at: float | None = None
    """When to fetch the next one (default: ``expires_at``)."""

    @property
    def renew_at(self) -> float:
        """The time from which the layer fetches a new token instead of using this one."""
        return self.expires_at if self.refresh_at is None else self.refresh_at

    @property
    def header(self) -> str:
        """The ``Authorization`` header value: ``Bearer <token>``."""
        return f"Bearer {self.access_token}"

    def __repr__(self) -> str:
        return (
            f"Token(token_type={self.token_type!r}, expires_at={self.expires_at:.3f}, "
            f"scope={self.scope!r}, access_token=[REDACTED])"
        )


class _TokenRetryPolicy(StatusRetryPolicy):
    """The default policy, with the token request treated as safe to repeat: asking for
    a client-credentials token again only issues another token (RFC 6749, 4.4)."""

    def decide(self, outcome: RetryOutcome) -> float | None:
        request = outcome.request
        if "idempotency-key" not in request.headers:
            request = request.replace(headers=request.headers.copy_with({"Idempotency-Key": "-"}))
            outcome = dataclasses.replace(outcome, request=request)
        return super().decide(outcome)


def default_token_layers(timeout: float = 10.0, *, clock: Clock | None = None) -> list[Layer]:
    """The token request's stack when none is given: 3 attempts on connect errors,
    timeouts, 429 and 5xx (backoff 0.2 s, doubling, jittered), each attempt bounded by
    ``timeout`` seconds."""
    return [
        RetryLayer(attempts=3, policy=_TokenRetryPolicy(backoff=0.2, max_delay=2.0), clock=clock),
        TimeoutLayer(timeout, clock=clock),
    ]


class ClientCredentialsLayer:
    """Authorize every call with a token from an OAuth 2.0 token endpoint.

    ``ClientCredentialsLayer(token_url, client_id, client_secret, scope="read")``.

    * The client authenticates with HTTP Basic (``auth_method="basic"``, the RFC's
      recommendation) or in the form body (``"post"``).
    * A token is reused until ``refresh_margin`` seconds before it expires
      (``expires_in`` from the token endpoint, else ``default_expires_in``), or until
      half its lifetime for a token shorter-lived than twice the margin; one fetch
      serves every caller waiting for it (single flight). If that early renewal fails,
      calls go on with the token held until it expires.
    * A call answered 401 is sent once more with a fresh token (the rejected token is
      dropped, once, however many calls saw it rejected).
    * The token request goes through ``layers`` (default: 3 attempts, 10 s each) on
      ``transport`` (default: an :class:`~lamina.transports.HttpxTransport` of its own,
      closed by :meth:`aclose`).
    * ``backend="redis://..."`` (or a :class:`lamina.backends.RedisBackend`) shares the
      token and its refresh with every process using the same token URL, client id and
      scope; if Redis fails, the layer fetches its own token (``on_error="closed"``
      refuses instead).

    The client secret and tokens never appear in reprs, logs, spans or errors.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | Sequence[str] | None = None,
        audience: str | None = None,
        extra_params: dict[str, str] | None = None,
        auth_method: str = "basic",
        refresh_margin: float = 30.0,
        default_expires_in: float = 300.0,
        token_timeout: float = 10.0,
        layers: Sequence[Layer] | None = None,
        transport: Transport | None = None,
        backend: object = None,
        clock: Clock | None = None,
    ) -> None:
        self.token_url = _check_url(token_url)
        self.client_id = _check_text(client_id, "client_id")
        self._secret = _check_text(client_secret, "client_secret")
        self.scope = _check_scope(scope)
        if audience is not None:
            audience = _check_text(audience, "audience")
        self.audience = audience
        if extra_params is not None and not (
            isinstance(extra_params, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in extra_params.items())
        ):
            raise ConfigError("must be a mapping of strings to strings", field="extra_params")
        reserved = {"grant_type", "client_id", "client_secret", "scope", "audience"}
        clash = sorted(reserved & set(extra_params or ()))
        if clash:
            raise ConfigError(f"may not set {', '.join(clash)}", field="extra_params")
        self.extra_params = dict(extra_params or {})
        self.auth_method = check.choice(auth_method, "auth_method", AUTH_METHODS)
        self.refresh_margin = check.seconds(refresh_margin, "refresh_margin", allow_zero=True)
        self.default_expires_in = check.seconds(default_expires_in, "default_expires_in")
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise ConfigError(f"must be a lamina Clock, got {type(clock).__name__}", field="clock")
        self.clock = clock or default_clock
        timeout = check.seconds(token_timeout, "token_timeout")
        token_layers = default_token_layers(timeout) if layers is None else _check_layers(layers)
        # the shared fetch lock outlives the default token request (3 attempts, backoff)
        self._lease_ms = _LOCK_MS if layers is not None else max(_LOCK_MS, int(3e3 * timeout + 5e3))
        if transport is not None and not (callable(transport) and hasattr(transport, "aclose")):
            raise ConfigError(
                f"must be a lamina transport, got {type(transport).__name__}", field="transport"
            )
        self._owns_transport = transport is None
        self._transport = transport
        self._token_layers = token_layers
        self._service: Service | None = None
        self._shared = _shared_connection(backend)
        # the key that names this client's token in a shared store: no secret in it
        self._name = hashlib.sha256(
            "\n".join([self.token_url, self.client_id, self.scope or "", audience or ""]).encode()
        ).hexdigest()[:32]
        self._token: Token | None = None
        self._rejected: Token | None = None
        self._flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Token]]
        self._flights = weakref.WeakKeyDictionary()
        self.fetches = 0
        """Token requests this layer made (shared tokens read from Redis not counted)."""

    # -- tokens ----------------------------------------------------------------
    async def token(self, request: Request | None = None) -> Token:
        """The current token, fetched (once, for every concurrent caller) if there is
        none or it is about to expire."""
        token = self._token
        if token is not None and self.clock.now() < token.renew_at:
            return token
        loop = asyncio.get_running_loop()
        flight = self._flights.get(loop)
        if flight is None or flight.done():
            flight = loop.create_task(self._refresh(request, token or self._rejected))
            flight.add_done_callback(_retrieve)
            self._flights[loop] = flight
        # shield: a caller cancelled (or out of time) does not cancel the others' fetch
        try:
            return await self._wait(flight, request)
        except LaminaError as exc:
            # An early renewal failed: the token held has not expired yet, keep using it
            # (the next call tries again). Not one a 401 dropped: that one is not held.
            if token is None or self._token is not token or self.clock.now() >= token.expires_at:
                raise
            if request is not None:
                emit(request, REFRESH_FAILED, error=type(exc).__name__)
            return token

    async def _wait(self, flight: asyncio.Task[Token], request: Request | None) -> Token:
        deadline = request.deadline if request is not None else None
        if deadline is None:
            return await asyncio.shield(flight)
        try:
            async with asyncio.timeout(max(0.0, deadline - self.clock.now())):
                return await asyncio.shield(flight)
        except builtins.TimeoutError:
            raise TimeoutError(
                "deadline passed while waiting for an access token",
                request=request,
                timeout=0.0,
                request_sent=False,
            ) from None

    def invalidate(self, token: Token) -> None:
        """Drop ``token`` if it is still the current one (a 401 showed it is no good)."""
        if self._token is token:
            self._token = None
            self._rejected = token  # not to be read back from a shared store

    async def _refresh(self, request: Request | None, stale: Token | None) -> Token:
        if self._shared is not None:
            token = await self._shared_refresh(request, stale)
        else:
            token = await self._fetch(request)
        self._token = token
        return token

    async def _fetch(self, request: Request | None) -> Token:
        service = self._service
        if service is None:
            service = self._service = ServiceBuilder(self._token_layers).service(
                await self._get_transport()
            )
        form = {"grant_type": "client_credentials", **self.extra_params}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if self.auth_method == "basic":
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        endpoint = request.endpoint if request is not None else None
        token_request = Request(
            "POST",
            self.token_url,
            headers=headers,
            content=urlencode(form),
            endpoint=endpoint,
            deadline=None,
        )
        started = self.clock.now()
        try:
            response = await service(token_request)
        except LaminaError as exc:
            raise TokenError(
                f"token request failed: {self._scrub(str(exc))}",
                token_url=self.token_url,
                endpoint=endpoint,
            ) from None
        self.fetches += 1
        token = self._read(response, started, endpoint)
        if request is not None:
            emit(
                request,
                FETCHED,
                expires_in=round(token.expires_at - started, 3),
                source="token_url",
            )
        return token

    def _read(self, response: Response, started: float, endpoint: str | None) -> Token:
        status = response.status_code
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        if not 200 <= status < 300:
            code = body.get("error") if isinstance(body, dict) else None
            code = code if isinstance(code, str) and code.isascii() and len(code) < 64 else None
            raise TokenError(
                f"token endpoint answered HTTP {status}" + (f" ({code})" if code else ""),
                token_url=self.token_url,
                status_code=status,
                error=code,
                endpoint=endpoint,
            )
        if not isinstance(body, dict):
            raise self._unusable("the body is not a JSON object", status, endpoint)
        access = body.get("access_token")
        if not isinstance(access, str) or not access or not _is_header_safe(access):
            raise self._unusable("no usable access_token", status, endpoint)
        kind = body.get("token_type", "Bearer")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise self._unusable(f"token_type {str(kind)[:20]!r} is not Bearer", status, endpoint)
        expires_in = body.get("expires_in")
        if expires_in is None:
            expires_in = self.default_expires_in
        if isinstance(expires_in, str):  # some servers send it as a string
            try:
                expires_in = float(expires_in.strip())
            except ValueError:
                raise self._unusable("expires_in is not a number", status, endpoint) from None
        if type(expires_in) not in (int, float):  # JSON true is no lifetime
            raise self._unusable("expires_in is not a number", status, endpoint)
        if not 0 < expires_in < math.inf:  # NaN, 0, negative, infinite
            raise self._unusable("expires_in is out of range", status, endpoint)
        scope = body.get("scope") if isinstance(body.get("scope"), str) else self.scope
        # "never expires" (a huge value) is kept for at most _MAX_LIFETIME
        lifetime = min(float(expires_in), _MAX_LIFETIME)
        # a short-lived token is renewed half-way, not on every call
        margin = min(self.refresh_margin, lifetime / 2)
        return Token(access, "Bearer", started + lifetime, scope, started + lifetime - margin)

    def _unusable(self, why: str, status: int, endpoint: str | None) -> TokenError:
        return TokenError(
            f"token endpoint answered {status} without a usable token: {why}",
            token_url=self.token_url,
            endpoint=endpoint,
        )

    def _scrub(self, text: str) -> str:
        secrets = [self._secret]
        if self._token is not None:
            secrets.append(self._token.access_token)
        return scrub(text, secrets)

    async def _get_transport(self) -> Transport:
        if self._transport is None:
            from ..transports.httpx import HttpxTransport

            # If aclose() is never called (a flow built the layer), the transport closes
            # its client at the loop's shutdown by itself: a second closer here would
            # race it ("aclose(): asynchronous generator is already running").
            self._transport = HttpxTransport()
        return self._transport

    # -- shared through Redis -------------------------------------------------------
    async def _shared_refresh(self, request: Request | None, stale: Token | None) -> Token:
        from ..backends.redis_connection import RedisUnavailable

        shared = self._shared
        assert shared is not None
        key = shared.key("oauth", self._name)
        lock = shared.key("oauth", self._name, "lock")
        owner = hashlib.sha256(str(id(self)).encode() + str(time.time()).encode()).hexdigest()
        try:
            token = await self._read_shared(key, stale)
            if token is not None:
                return token
            # Wait while another process fetches, as long as its lock can live: then the
            # lock is free (fetched, failed, or its holder died) and this one takes it.
            loop = asyncio.get_running_loop()
            give_up = loop.time() + self._lease_ms / 1000 + 2 * _POLL
            lease = self._lease_ms
            while not await shared.run(lambda r: r.set(lock, owner, nx=True, px=lease)):
                if loop.time() >= give_up:
                    raise TokenError(
                        "timed out waiting for another process to fetch the token",
                        token_url=self.token_url,
                    )
                await asyncio.sleep(_POLL)  # another process is fetching it
                token = await self._read_shared(key, stale)
                if token is not None:
                    return token
        except RedisUnavailable:
            shared.unavailable("token", request)  # raises under on_error="closed"
            return await self._fetch(request)
        # This process holds the lock. Once the token is fetched, Redis failing only
        # costs the other processes a fetch of their own: the token is kept, not fetched
        # again (nor refused under on_error="closed").
        try:
            token = await self._fetch(request)
            await self._quietly(request, self._write_shared(key, token))
        finally:
            await self._quietly(request, shared.run(lambda r: r.eval(_UNLOCK, 1, lock, owner)))
        return token

    async def _quietly(self, request: Request | None, operation: Awaitable[object]) -> None:
        from ..backends.redis_connection import RedisUnavailable

        assert self._shared is not None
        try:
            await operation
        except RedisUnavailable:
            self._shared.unavailable("token", request, reject=False)

    async def _read_shared(self, key: str, stale: Token | None) -> Token | None:
        shared = self._shared
        assert shared is not None
        raw, ttl_ms = await shared.run(lambda r: r.eval(_READ, 1, key))
        if raw is None or ttl_ms is None or int(ttl_ms) <= 0:
            return None
        try:
            data = json.loads(_open_box(raw, self._box_key()))
            access, scope = data["t"], data.get("s")
        except (ValueError, KeyError, TypeError):
            return None  # not ours (another secret) or damaged: fetch a new one
        if stale is not None and access == stale.access_token:
            return None  # the one a 401 (or expiry) just dropped
        # the key expires when the token is due for renewal; "m" is the margin after that
        refresh_at = self.clock.now() + int(ttl_ms) / 1000
        margin = data.get("m", 0.0)
        if type(margin) not in (int, float) or margin < 0:
            return None
        return Token(access, "Bearer", refresh_at + margin, scope, refresh_at)

    async def _write_shared(self, key: str, token: Token) -> None:
        shared = self._shared
        assert shared is not None
        ttl = token.renew_at - self.clock.now()
        if ttl < 0.001:
            return
        margin = token.expires_at - token.renew_at
        data = {"t": token.access_token, "s": token.scope, "m": margin}
        box = _seal(json.dumps(data), self._box_key())
        await shared.run(lambda r: r.set(key, box, px=max(1, int(ttl * 1000))))

    def _box_key(self) -> bytes:
        # Tokens in Redis are sealed with a key only holders of the client secret know.
        return hashlib.sha256(b"lamina-oauth\n" + self._secret.encode()).digest()

    # -- layer -------------------------------------------------------------------
    def wrap(self, inner: Service) -> Service:
        return ClientCredentialsService(inner, self)

    async def aclose(self) -> None:
        """Close the token transport if the layer made it (a later call makes another)."""
        if self._owns_transport and self._transport is not None:
            transport, self._transport, self._service = self._transport, None, None
            await transport.aclose()

    def __repr__(self) -> str:
        shared = f", backend={self._shared!r}" if self._shared is not None else ""
        return (
            f"ClientCredentialsLayer(token_url={redact_url(self.token_url)!r}, "
            f"client_id={self.client_id!r}, client_secret=[REDACTED], scope={self.scope!r}, "
            f"auth_method={self.auth_method!r}, refresh_margin={self.refresh_margin:g}s{shared})"
        )


class ClientCredentialsService:
    """Service made by :class:`ClientCredentialsLayer`: authorizes, retries once on 401."""

    __slots__ = ("inner", "layer")

    def __init__(self, inner: Service, layer: ClientCredentialsLayer) -> None:
        self.inner = inner
        self.layer = layer

    async def __call__(self, request: Request) -> Response:
        layer = self.layer
        token = layer._token  # fast path: a held token needs no await
        if token is None or layer.clock.now() >= token.renew_at:
            token = await layer.token(request)
        try:
            response = await self.inner(_authorized(request, token))
        except HTTPStatusError as exc:
            if exc.status_code != 401:
                raise
            # a parse layer inside this one refused the 401: same single refresh
        else:
            if response.status_code != 401:
                return response
        layer.invalidate(token)
        emit(request, REFRESHED_AFTER_401)
        fresh = await layer.token(request)
        return await self.inner(_authorized(request, fresh))

    def __repr__(self) -> str:
        return f"<ClientCredentialsService {redact_url(self.layer.token_url)} -> {self.inner!r}>"


def _retrieve(task: asyncio.Task[Token]) -> None:
    if not task.cancelled():
        task.exception()  # every waiter may have gone: never "exception was never retrieved"


def _authorized(request: Request, token: Token) -> Request:
    authorized = request.replace()  # then set the field: replace(headers=...) costs more
    authorized.headers = request.headers.copy_with({"Authorization": token.header})
    return authorized


def _shared_connection(backend: object) -> RedisConnection | None:
    if backend is None or backend == "memory":
        return None
    from ..backends.base import resolve_backend
    from ..backends.memory import InMemoryBackend
    from ..backends.redis_connection import RedisConnection

    resolved = resolve_backend(backend)
    if isinstance(resolved, RedisConnection):
        return resolved
    if isinstance(resolved, InMemoryBackend):
        return None  # in-process: the layer's own token is that
    raise ConfigError(
        f"a {type(resolved).__name__} cannot share a token: give a Redis backend or 'memory'",
        field="backend",
    )


def _check_scope(scope: object) -> str | None:
    if scope is None:
        return None
    if isinstance(scope, str):
        items = scope.split()
    elif isinstance(scope, Sequence) and all(isinstance(item, str) for item in scope):
        items = list(scope)
    else:
        raise ConfigError("must be a string or a list of strings", field="scope")
    # RFC 6749, 3.3: scope tokens are printable ASCII without space, '"' or '\\'
    for item in items:
        if not item or not all("!" <= ch <= "~" and ch not in '"\\' for ch in item):
            raise ConfigError(
                f"{item!r} is not a scope (printable ASCII, no spaces or quotes)", field="scope"
            )
    return " ".join(items) or None


def _check_layers(layers: object) -> list[Layer]:
    if isinstance(layers, str | bytes) or not isinstance(layers, Sequence):
        raise ConfigError("must be a list of layers", field="layers")
    for layer in layers:
        if not callable(getattr(layer, "wrap", None)):
            raise ConfigError(
                f"must be a list of layers (objects with wrap()), got {type(layer).__name__}",
                field="layers",
            )
        if getattr(layer, "log_bodies", False) is True:
            raise ConfigError(
                f"{type(layer).__name__} with log_bodies=True would log the token (and, with "
                "auth_method='post', the client secret): leave log_bodies off here",
                field="layers",
            )
    return list(layers)


def _check_url(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("must be an http(s) URL", field="token_url")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("must be an http(s) URL with a host", field="token_url")
    if parts.username or parts.password:
        raise ConfigError(
            "must not carry credentials: pass client_id and client_secret", field="token_url"
        )
    return value


def _check_text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("must be a non-empty string", field=field)
    if not _is_header_safe(value):
        raise ConfigError("must not contain control characters", field=field)
    return value


def _is_header_safe(value: str) -> bool:
    return all(" " <= ch != "\x7f" for ch in value)


_POLL = 0.05
_MAX_LIFETIME = 10 * 365 * 86400.0  # seconds a token is kept at most
_LOCK_MS = 30_000
_READ = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"
_UNLOCK = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def _seal(text: str, key: bytes) -> str:
    """``text`` XORed with a keystream from ``key`` and a fresh nonce, with a MAC."""
    import os

    nonce = os.urandom(16)
    data = text.encode()
    sealed = bytes(a ^ b for a, b in zip(data, _stream(key, nonce, len(data)), strict=True))
    mac = hmac.new(key, nonce + sealed, hashlib.sha256).digest()
    return base64.b64encode(nonce + mac + sealed).decode()


def _open_box(raw: Any, key: bytes) -> str:
    blob = base64.b64decode(raw if isinstance(raw, bytes | str) else b"", validate=True)
    nonce, mac, sealed = blob[:16], blob[16:48], blob[48:]
    if len(nonce) < 16 or not hmac.compare_digest(
        mac, hmac.new(key, nonce + sealed, hashlib.sha256).digest()
    ):
        raise ValueError("not sealed with this key")
    return bytes(
        a ^ b for a, b in zip(sealed, _stream(key, nonce, len(sealed)), strict=True)
    ).decode()


def _stream(key: bytes, nonce: bytes, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:size])
