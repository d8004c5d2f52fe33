"""A small OAuth 2.0 authorization server and protected API on a :class:`LocalServer`.

``oauth = OAuthUpstream.install(server, client_id="app", client_secret="s3cret")``
serves ``{prefix}/token`` (client credentials grant, Basic or form authentication)
and ``{prefix}/api/...`` (answers JSON for a valid, unexpired Bearer token, 401
otherwise). ``oauth.revoke_all()`` makes every token issued so far invalid;
``oauth.issued`` counts the tokens handed out. For tests, examples and demos.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .server import LocalServer, RecordedRequest, Reply

__all__ = ["OAuthUpstream"]


@dataclass
class OAuthUpstream:
    """State of one installed authorization server (see the module docstring)."""

    server: LocalServer
    client_id: str
    client_secret: str = field(repr=False)
    prefix: str = "/oauth"
    expires_in: float = 3600.0
    fail_next: int = 0
    """The next N token requests answer 503 (to exercise the token request's retry)."""
    issued: int = 0
    rejected: int = 0
    """API calls answered 401."""
    _tokens: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def install(
        cls,
        server: LocalServer,
        *,
        client_id: str = "lamina-client",
        client_secret: str = "lamina-client-secret",
        prefix: str = "/oauth",
        expires_in: float = 3600.0,
    ) -> OAuthUpstream:
        upstream = cls(server, client_id, client_secret, prefix, expires_in)
        server.route(f"{prefix}/token", upstream._token)
        server.route(f"{prefix}/api/", upstream._api)
        return upstream

    @property
    def token_url(self) -> str:
        return self.server.url_for(f"{self.prefix}/token")

    def api_url(self, path: str = "") -> str:
        return self.server.url_for(f"{self.prefix}/api/{path.lstrip('/')}")

    def revoke_all(self) -> None:
        """Every token issued so far is refused from now on."""
        with self._lock:
            self._tokens.clear()

    def _token(self, req: RecordedRequest) -> Reply:
        if req.method != "POST":
            return 405, {"error": "invalid_request"}, {}
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": "temporarily_unavailable"}, {}
        form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        client = self._client(req, form)
        if client != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="oauth"'}
        with self._lock:
            self.issued += 1
            token = f"tok-{next(self._ids)}-{time.monotonic_ns()}"
            self._tokens[token] = time.monotonic() + self.expires_in
        body: dict[str, object] = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }
        if form.get("scope"):
            body["scope"] = form["scope"]
        return 200, body, {"Cache-Control": "no-store"}

    def _client(self, req: RecordedRequest, form: dict[str, str]) -> tuple[str, str] | None:
        header = req.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                pair = base64.b64decode(header[6:], validate=True).decode()
            except ValueError:
                return None
            name, _, secret = pair.partition(":")
            return unquote(name), unquote(secret)
        if "client_id" in form:
            return form["client_id"], form.get("client_secret", "")
        return None

    def _api(self, req: RecordedRequest) -> Reply:
        header = req.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            expires = self._tokens.get(token)
            valid = expires is not None and time.monotonic() < expires
            if not valid:
                self.rejected += 1
        if not valid:
            return (
                401,
                {"error": "invalid_token"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return 200, {"ok": True, "path": req.path, "query": req.query}, {}
