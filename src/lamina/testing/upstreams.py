"""Sample upstream APIs on a LocalServer, for the examples, the demo and tests.

``install(server)`` adds:

* ``/users/{id}`` → ``{"id", "name", "email"}``; ``/users/{id}/posts`` → ``{"posts": [...]}``
* ``/analytics/users/{id}`` → ``{"user_id", "visits"}``
* ``/payment/validate``, ``/fraud/check``, ``/processor/charge``, ``/notify/payment`` (POST)
* ``/services/{name}/health`` → ``{"status": "ok"}``; names in ``down`` answer 503
"""

from __future__ import annotations

from collections.abc import Iterable

from .server import LocalServer, RecordedRequest, Reply

__all__ = ["install"]


def install(server: LocalServer, *, down: Iterable[str] = ()) -> LocalServer:
    """Add the sample routes to ``server`` and return it."""
    down_services = set(down)

    def users(req: RecordedRequest) -> Reply:
        parts = req.path.strip("/").split("/")
        user_id = parts[1] if len(parts) > 1 else "0"
        if len(parts) > 2 and parts[2] == "posts":
            return (
                200,
                {"posts": [{"id": n, "title": f"post {n} of {user_id}"} for n in (1, 2)]},
                {},
            )
        return (
            200,
            {"id": user_id, "name": f"User {user_id}", "email": f"u{user_id}@example.test"},
            {},
        )

    def analytics(req: RecordedRequest) -> Reply:
        return 200, {"user_id": req.path.rsplit("/", 1)[1], "visits": 42}, {}

    def payment(req: RecordedRequest) -> Reply:
        body = req.json() or {}
        step = req.path.strip("/").replace("/", ".")
        if step == "payment.validate":
            valid = isinstance(body, dict) and body.get("amount", 0) > 0
            return (200 if valid else 422), {"valid": valid, "amount": body.get("amount")}, {}
        if step == "fraud.check":
            return 200, {"risk": "low", "checked": body}, {}
        if step == "processor.charge":
            return 200, {"charged": True, "received": body}, {}
        return 200, {"notified": True, "received": body}, {}

    def health(req: RecordedRequest) -> Reply:
        name = req.path.strip("/").split("/")[1]
        if name in down_services:
            return 503, {"status": "down"}, {}
        return 200, {"status": "ok", "service": name}, {}

    server.route("/users/", users)
    server.route("/analytics/users/", analytics)
    for prefix in ("/payment/", "/fraud/", "/processor/", "/notify/"):
        server.route(prefix, payment)
    server.route("/services/", health)
    return server
