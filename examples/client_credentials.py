"""OAuth 2.0 client credentials: the orchestrator calls an API that wants a bearer token.

Run: ``python examples/client_credentials.py`` (starts lamina's local test server with a
small authorization server on it). Shows one token serving every call, a single refresh
when the authorization server revokes its tokens, and the secret never printed.
"""

from __future__ import annotations

import asyncio
import os

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina.layers import CircuitBreakerLayer, ClientCredentialsLayer
from lamina.testing import LocalServer
from lamina.testing.oauth import OAuthUpstream

CLIENT_SECRET = os.environ.get("REPORTS_CLIENT_SECRET", "demo-client-secret-9d1c")


async def main() -> None:
    with LocalServer() as server:
        oauth = OAuthUpstream.install(server, client_id="reports", client_secret=CLIENT_SECRET)
        auth = ClientCredentialsLayer(oauth.token_url, "reports", CLIENT_SECRET, scope="read")
        config = APIOrchestrationConfig(
            endpoints=[
                APIEndpoint(name=f"report_{n}", url=oauth.api_url(f"reports/{n}")) for n in range(4)
            ],
            mode="parallel",
        )

        def with_auth(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list:
            """The default stack, with the auth layer just outside the circuit breaker."""
            layers = APIOrchestrator.default_layers(endpoint, config)
            breaker = [isinstance(layer, CircuitBreakerLayer) for layer in layers].index(True)
            return [*layers[:breaker], auth, *layers[breaker:]]

        async with APIOrchestrator(config, layers=with_auth) as orchestrator:
            first = await orchestrator.run()
            print("outcomes:", {name: r.outcome for name, r in first.endpoints.items()})
            print("tokens fetched:", oauth.issued)
            oauth.revoke_all()  # the authorization server rotates its keys
            second = await orchestrator.run()
            print("after revocation:", {name: r.outcome for name, r in second.endpoints.items()})
            print("tokens fetched:", oauth.issued, "calls refused with 401:", oauth.rejected)
            print("layer:", auth)
        await auth.aclose()


if __name__ == "__main__":
    asyncio.run(main())
