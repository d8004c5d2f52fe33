"""One sweep over every output lamina produces, with known secrets in every request.

The secrets travel in the Authorization header, a cookie, API-key headers (X-API-Key,
X-RapidAPI-Key), a signed query parameter and an ``api_token`` one, through the
default stack (+ cache, logging on), in every mode, over both transports (the
upstream never echoes them back), with failures, retries and errors. None of the
secret values may appear in logs, spans, metrics, run reports, reprs, error strings
or cache keys.
"""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    HttpxTransport,
    LaminaError,
    OrchestrationMode,
    Request,
)
from lamina.testing import LocalServer
from lamina.transports import AiohttpTransport

BEARER = "bearer-SECRET-7f3a9c2e"
COOKIE = "cookie-SECRET-1b2c3d4e"
API_KEY = "apikey-SECRET-5e6f7a8b"
SIGNATURE = "sig-SECRET-9c0d1e2f"
RAPID_KEY = "rapid-SECRET-3a4b5c6d"  # issue 12: caught by the classifier's "key" pattern
API_TOKEN = "apitoken-SECRET-7e8f9a0b"
SECRETS = [BEARER, COOKIE, API_KEY, SIGNATURE, RAPID_KEY, API_TOKEN]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.__dict__))  # structured extras too


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret[:10]}... leaked in {where}"


def sweep_config(base: str, mode: OrchestrationMode) -> APIOrchestrationConfig:
    secret = {
        "headers": {
            "Authorization": f"Bearer {BEARER}",
            "Cookie": f"session={COOKIE}",
            "X-API-Key": API_KEY,
            "X-RapidAPI-Key": RAPID_KEY,
        },
        "params": {"signature": SIGNATURE, "api_token": API_TOKEN, "page": 1},
        "retry_delay": 0.001,
        "timeout": 1.0,
    }
    endpoints = [
        APIEndpoint(name="ok", url=f"{base}/status/200", **secret),
        APIEndpoint(
            name="flaky", url=f"{base}/flaky/sweep-{mode.value}?fail=1", depends_on=["ok"], **secret
        ),
        APIEndpoint(name="down", url=f"{base}/status/500", retry_count=1, **secret),
        APIEndpoint(name="reset", url=f"{base}/reset", retry_count=0, **secret),
        APIEndpoint(name="bad-json", url=f"{base}/invalid-json", **secret),
        APIEndpoint(
            name="signed-url",
            url=f"{base}/status/404?sig={SIGNATURE}&token={SIGNATURE}",
            retry_count=0,
        ),
        APIEndpoint(  # no Authorization: cacheable, its key is built from a signed URL
            name="signed-get",
            url=f"{base}/status/200?sig={SIGNATURE}",
            params={"signature": SIGNATURE},
            headers={"X-API-Key": API_KEY},
        ),
        APIEndpoint(
            name="post",
            url=f"{base}/status/201",
            method="POST",
            body={"note": "hello"},
            **secret,
        ),
    ]
    return APIOrchestrationConfig(
        endpoints=endpoints,
        mode=mode,
        cache_ttl=60,
        log_requests=True,
        log_responses=True,
        error_threshold=1.0,
    )


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_no_secret_in_any_output(lamina_server: LocalServer, kind: str) -> None:
    handler = Capture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    lamina_logger = logging.getLogger("lamina")
    lamina_logger.addHandler(handler)
    old_level = lamina_logger.level
    lamina_logger.setLevel(logging.DEBUG)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outputs: dict[str, list[str]] = {"reports": [], "reprs": [], "errors": [], "cache": []}
    try:
        for mode in OrchestrationMode:
            config = sweep_config(lamina_server.url, mode)
            transport = HttpxTransport() if kind == "httpx" else AiohttpTransport()
            orchestrator = APIOrchestrator(config, transport=transport, tracer_provider=provider)
            try:
                for _ in range(2):  # the second run is served from the cache
                    try:
                        report = await orchestrator.run({"input": "x"})
                    except LaminaError as exc:
                        outputs["errors"] += [str(exc), repr(exc)]
                        report = exc.report  # type: ignore[attr-defined]
                    outputs["reports"] += [
                        json.dumps(report.to_dict()),
                        report.summary(),
                        repr(report),
                    ]
                    for endpoint_report in report.endpoints.values():
                        if endpoint_report.error is not None:
                            error = endpoint_report.error
                            outputs["errors"] += [str(error), repr(error)]
                            cause = error.__cause__
                            while cause is not None:
                                outputs["errors"] += [str(cause), repr(cause)]
                                cause = cause.__cause__
                metrics = orchestrator.get_metrics()
                outputs["reports"] += [repr(metrics), json.dumps(metrics.as_dict(), default=str)]
                outputs["reprs"] += [repr(orchestrator), repr(config), repr(transport)]
                outputs["reprs"] += [repr(e) for e in config.endpoints]
                outputs["reprs"] += [
                    repr(
                        Request("GET", config.endpoints[0].url, headers=e.headers, params=e.params)
                    )
                    for e in config.endpoints
                ]
                cache = orchestrator._shared.cache
                keys = list(cache.store._cache.keys())
                assert keys, "nothing was cached"
                outputs["cache"] += [repr(cache), repr(cache.store), repr(keys)]
            finally:
                await orchestrator.aclose()
    finally:
        lamina_logger.removeHandler(handler)
        lamina_logger.setLevel(old_level)

    # the secrets were really sent, so the sweep is not vacuous
    sent = lamina_server.requests("/status/201")[0]
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.query["signature"] == SIGNATURE
    assert handler.lines, "logging produced nothing"
    spans = exporter.get_finished_spans()
    assert spans, "tracing produced nothing"
    assert outputs["errors"], "no error was produced"

    assert_clean("logs", "\n".join(handler.lines))
    for span in spans:
        assert_clean(f"span {span.name}", span.to_json())
    for name, texts in outputs.items():
        assert_clean(name, "\n".join(texts))
