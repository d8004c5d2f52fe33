"""execute() never turns a failure into None without a word: one WARNING per endpoint
that failed, was handled or was skipped because of a failure, on the ``lamina`` logger."""

from __future__ import annotations

import logging

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina.testing import LocalServer

SECRET = "s3cret-header-value"


def _boom(exc: Exception) -> object:
    raise RuntimeError(f"handler saw the key {SECRET} and gave up")


def _config(base: str) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="user", url=f"{base}/json?id={{user_id}}", retry_count=0),
            APIEndpoint(name="broken", url=f"{base}/status/500?api_key=q-secret", retry_count=0),
            APIEndpoint(name="refused", url="http://127.0.0.1:9/x", retry_count=0),
            APIEndpoint(
                name="handled",
                url=f"{base}/status/503",
                retry_count=0,
                error_handler=lambda exc: {"fallback": True},
            ),
            APIEndpoint(
                name="hook_fails",
                url=f"{base}/status/404",
                headers={"X-Api-Key": SECRET},
                retry_count=0,
                error_handler=_boom,
            ),
            APIEndpoint(name="child", url=f"{base}/json", depends_on=["broken"]),
            APIEndpoint(name="fine", url=f"{base}/json"),
            APIEndpoint(name="off", url=f"{base}/json", condition=lambda ctx: False),
        ]
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    out: dict[str, str] = {}
    for record in caplog.records:
        if record.name == "lamina" and record.levelno == logging.WARNING:
            name = record.getMessage().split("'")[1]
            assert name not in out, f"two warnings for {name}"
            out[name] = record.getMessage()
    return out


async def test_execute_warns_once_per_failed_handled_or_blocked_endpoint(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lamina")
    async with APIOrchestrator(_config(lamina_server.url)) as orchestrator:
        value = await orchestrator.execute({})
    assert value["user"] is None
    assert value["broken"] is None
    assert value["refused"] is None
    assert value["handled"] == {"fallback": True}
    warned = _warnings(caplog)
    assert set(warned) == {"user", "broken", "refused", "handled", "hook_fails", "child"}
    assert "ConfigError" in warned["user"]
    assert "placeholder {user_id}" in warned["user"]
    assert "HTTPStatusError" in warned["broken"]
    assert "HTTP 500" in warned["broken"]
    assert "ConnectError" in warned["refused"]
    assert "HTTPStatusError" in warned["handled"]
    assert "503" in warned["handled"]
    assert "handled" in warned["handled"]
    # the skipped endpoint names the dependency and what happened to it
    assert "skipped" in warned["child"]
    assert "'broken'" in warned["child"]
    assert "HTTPStatusError" in warned["child"]
    # scrubbed: a secret header value and a secret query value never reach the log
    assert "RuntimeError" in warned["hook_fails"]
    text = "\n".join(warned.values())
    assert SECRET not in text
    assert "q-secret" not in text
    assert "[REDACTED]" in warned["hook_fails"]


async def test_a_clean_run_logs_nothing(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lamina")
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=f"{lamina_server.url}/json")]
    )
    async with APIOrchestrator(config) as orchestrator:
        assert (await orchestrator.execute())["a"] is not None
        report = await orchestrator.run()  # run() returns the whole report: nothing to say
    assert report.ok
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_execute_sync_warns_too(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lamina")
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="gone", url=f"{lamina_server.url}/status/404", retry_count=0)]
    )
    assert APIOrchestrator(config).execute_sync() == {"gone": None}
    assert "gone" in _warnings(caplog)


async def test_a_fallback_value_is_said_aloud_too(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    from lamina.layers import FallbackLayer

    caplog.set_level(logging.WARNING, logger="lamina")
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="gone", url=f"{lamina_server.url}/status/404", retry_count=0)]
    )
    async with APIOrchestrator(config, layers=[FallbackLayer({"n": 1})]) as orchestrator:
        assert await orchestrator.execute() == {"gone": {"n": 1}}
    warned = _warnings(caplog)
    assert "fallback" in warned["gone"]
    assert "HTTPStatusError" in warned["gone"]
