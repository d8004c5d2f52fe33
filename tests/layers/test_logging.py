"""LoggingLayer: structured, redacted records on the ``lamina`` logger."""

from __future__ import annotations

import logging

import pytest

from lamina import ConfigError, ConnectError, HttpxTransport, Request, ServiceBuilder
from lamina.layers.logging import LoggingLayer
from lamina.testing import LocalServer

SECRET = "s3cr3t-Tok3n-value"


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "lamina"]


async def test_request_and_response_records_with_extra_fields(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lamina")
    async with HttpxTransport() as transport:
        service = LoggingLayer().wrap(transport)
        await service(
            Request(
                "GET",
                lamina_server.url_for(f"/json?api_key={SECRET}"),
                endpoint="users",
                attempt=2,
            )
        )
    request_record, response_record = records(caplog)
    assert request_record.levelno == logging.INFO
    assert request_record.lamina_endpoint == "users"  # type: ignore[attr-defined]
    assert request_record.lamina_method == "GET"  # type: ignore[attr-defined]
    assert request_record.lamina_attempt == 2  # type: ignore[attr-defined]
    assert "REDACTED" in request_record.lamina_url  # type: ignore[attr-defined]
    assert response_record.lamina_status == 200  # type: ignore[attr-defined]
    assert response_record.lamina_latency_ms > 0  # type: ignore[attr-defined]
    assert "-> 200" in response_record.getMessage()
    assert SECRET not in caplog.text


async def test_error_statuses_log_at_warning_and_bodies_only_when_asked(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lamina")
    async with HttpxTransport() as transport:
        quiet = LoggingLayer(log_requests=False).wrap(transport)
        await quiet(Request("GET", lamina_server.url_for("/status/503")))
        (record,) = records(caplog)
        assert record.levelno == logging.WARNING
        assert record.lamina_status == 503  # type: ignore[attr-defined]
        assert not hasattr(record, "lamina_body")
        caplog.clear()

        loud = LoggingLayer(log_bodies=True, max_body_chars=40).wrap(transport)
        await loud(
            Request(
                "POST",
                lamina_server.url_for("/echo"),
                headers={"X-API-Key": SECRET},
                json={"note": "x" * 100},
            )
        )
    request_record, _ = records(caplog)
    assert request_record.lamina_body.startswith('{"note": "xxx')  # type: ignore[attr-defined]
    assert request_record.lamina_body.endswith("…")  # type: ignore[attr-defined]
    assert len(request_record.lamina_body) == 41  # type: ignore[attr-defined]
    # /echo returns our headers: the API key must be scrubbed from the body log
    loud_body = LoggingLayer(log_bodies=True, max_body_chars=5000)
    caplog.clear()
    async with HttpxTransport() as transport:
        await loud_body.wrap(transport)(
            Request("GET", lamina_server.url_for("/echo"), headers={"X-API-Key": SECRET})
        )
    _, echoed = records(caplog)
    assert "x-api-key" in echoed.lamina_body  # type: ignore[attr-defined]
    assert SECRET not in echoed.lamina_body  # type: ignore[attr-defined]
    assert SECRET not in caplog.text


async def test_errors_log_type_and_redacted_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lamina")
    with LocalServer() as gone:
        url = gone.url_for(f"/x?token={SECRET}")
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(LoggingLayer()).service(transport)
        with pytest.raises(ConnectError):
            await service(Request("GET", url, headers={"Authorization": f"Bearer {SECRET}"}))
    _, error = records(caplog)
    assert error.levelno == logging.WARNING
    assert error.lamina_error_type == "lamina.ConnectError"  # type: ignore[attr-defined]
    assert "ConnectError" in error.getMessage()
    assert error.exc_info is None
    assert SECRET not in caplog.text


async def test_custom_logger_and_disabled_logger(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    mine = logging.getLogger("tests.lamina.mine")
    caplog.set_level(logging.INFO, logger="tests.lamina.mine")
    async with HttpxTransport() as transport:
        await LoggingLayer(logger=mine).wrap(transport)(
            Request("GET", lamina_server.url_for("/json"))
        )
        assert [r.name for r in caplog.records] == ["tests.lamina.mine"] * 2
        caplog.clear()
        caplog.set_level(logging.ERROR, logger="lamina")
        await LoggingLayer().wrap(transport)(Request("GET", lamina_server.url_for("/status/500")))
    assert records(caplog) == []


def test_bad_config() -> None:
    with pytest.raises(ConfigError) as info:
        LoggingLayer(max_body_chars=-1)
    assert info.value.field == "max_body_chars"
    with pytest.raises(ConfigError) as info:
        LoggingLayer(logger="lamina")  # type: ignore[arg-type]
    assert info.value.field == "logger"
