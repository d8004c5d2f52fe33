"""LoggingLayer(log_bodies=True) masks secret-named fields in the bodies it logs (a token
endpoint's answer, a form carrying a client secret), on the real loopback server."""

from __future__ import annotations

import logging
import uuid

import pytest

from lamina import HttpxTransport, Request, ServiceBuilder
from lamina.layers import LoggingLayer
from lamina.testing import LocalServer

TOKEN = "eyJhbGciOi.tokenvalue.9f8e7d6c"
SECRET = "form-secret-4b3a2c1d"


async def test_secret_named_fields_in_logged_bodies_are_masked(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/token-{uuid.uuid4().hex[:6]}"
    lamina_server.route(
        path, lambda req: (200, {"access_token": TOKEN, "token_type": "bearer", "n": 1}, {})
    )
    caplog.set_level(logging.DEBUG, logger="lamina")
    async with HttpxTransport() as transport:
        service = ServiceBuilder([LoggingLayer(log_bodies=True)]).service(transport)
        response = await service(
            Request(
                "POST",
                lamina_server.url_for(path),
                content=f"grant_type=client_credentials&client_secret={SECRET}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        )
    assert response.json()["access_token"] == TOKEN  # the caller still gets it
    assert TOKEN not in caplog.text
    assert SECRET not in caplog.text
    assert '"n": 1' in caplog.text  # what is not secret is still logged
    assert "grant_type=client_credentials" in caplog.text
