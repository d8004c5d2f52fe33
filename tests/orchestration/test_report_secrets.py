"""Secrets stay out of report reprs, and bad header values are refused at construction.

Review of issue 12, items 4/5: ``repr(EndpointReport)`` and ``repr(RunReport)`` showed
an error's own repr (a hook's error, a ``UnicodeEncodeError``: both may hold a header
value); a header value with CR, LF, NUL or another control character was accepted by
``APIEndpoint`` and failed only when sent. Both transports (the autouse fixture).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, ConfigError, EndpointError
from lamina.flows import config_from_dict
from lamina.redact import scrub
from lamina.testing import LocalServer

# A quote, "&", "<" and a backslash: repr, JSON and HTML each encode them differently.
TOKEN = "sk-CORE99-O'Brien&M<x>\\tok"
KEY = "qk-77Z1x9"


def leaked(text: str, *secrets: str) -> bool:
    """True when any secret is in ``text``, raw or in any encoding."""
    return scrub(text, secrets) != text or any(s in text for s in secrets)


def rejecting(kind: str) -> Any:
    """An error handler that fails with the caller's secret in its error."""

    def handle(error: Exception) -> Any:
        if kind == "value":
            raise ValueError(f"upstream refused key {TOKEN!r} (query key {KEY})")
        # str() of this error holds no secret; its repr() holds the whole value
        raise UnicodeEncodeError("ascii", TOKEN, 0, 1, "refused")

    return handle


@pytest.mark.parametrize("kind", ["value", "encode"])
async def test_report_reprs_show_type_and_scrubbed_message(
    lamina_server: LocalServer, kind: str
) -> None:
    endpoint = APIEndpoint(
        name="a",
        url=lamina_server.url_for(f"/status/403?api_key={KEY}"),
        headers={"X-Api-Key": TOKEN},
        error_handler=rejecting(kind),
        retry_count=0,
    )
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[endpoint])) as orchestrator:
        report = await orchestrator.run()
    sent = lamina_server.requests("/status/403")[-1]
    assert sent.headers["x-api-key"] == TOKEN  # the secret really went out...
    entry = report.endpoints["a"]
    assert entry.outcome == "failed"
    name = "ValueError" if kind == "value" else "UnicodeEncodeError"
    texts = {
        "EndpointReport": repr(entry),
        "RunReport": repr(report),
        "to_dict": json.dumps(report.to_dict()),
        "error_text": entry.error_text or "",
    }
    for where, text in texts.items():  # ...and reached none of them
        assert not leaked(text, TOKEN, KEY), where
        assert name in text, where
    assert f"error='{name}: " in repr(entry) or f'error="{name}: ' in repr(entry)
    if kind == "value":
        assert (
            entry.error_text
            == 'ValueError: upstream refused key "[REDACTED]" (query key [REDACTED])'
        )


async def test_hook_error_before_the_request_and_fail_fast_are_scrubbed(
    lamina_server: LocalServer,
) -> None:
    def transform(context: Any) -> Any:
        raise RuntimeError(f"cannot sign with {TOKEN}")

    endpoint = APIEndpoint(
        name="a",
        url=lamina_server.url_for("/json"),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
        transform_input=transform,
    )
    config = APIOrchestrationConfig(endpoints=[endpoint], fail_fast=True)
    async with APIOrchestrator(config) as orchestrator:
        with pytest.raises(EndpointError) as caught:
            await orchestrator.run()
    assert not leaked(str(caught.value), TOKEN)
    assert "RuntimeError: cannot sign with [REDACTED]" in str(caught.value)
    report = caught.value.report
    assert report is not None
    assert not leaked(repr(report), TOKEN)
    assert "RuntimeError: cannot sign with [REDACTED]" in repr(report)
    assert lamina_server.hits("/json") == 0


BAD_VALUES = {
    "LF": "Bearer tok-SECRET-1\n",
    "CR": "Bearer tok-SECRET-1\r",
    "CRLF injection": "tok-SECRET-1\r\nX-Injected: 1",
    "NUL": "tok-SECRET-1\x00",
    "BEL": "tok-SECRET-1\x07",
    "DEL": "tok-SECRET-1\x7f",
}


@pytest.mark.parametrize("label", list(BAD_VALUES))
def test_endpoint_refuses_control_characters_in_headers(label: str) -> None:
    value = BAD_VALUES[label]
    with pytest.raises(ConfigError) as caught:
        APIEndpoint(name="billing", url="http://127.0.0.1:9/x", headers={"Authorization": value})
    error = caught.value
    assert error.endpoint == "billing"
    assert error.field == "headers.Authorization"
    assert "header value holds" in str(error)
    assert "tok-SECRET-1" not in str(error) + repr(error)
    # the flow path names the place in the file
    endpoint = {"name": "billing", "url": "http://127.0.0.1:9/x"}
    headers = {"Authorization": "${TOKEN}"}
    with pytest.raises(ConfigError) as in_flow:
        config_from_dict({"endpoints": [endpoint | {"headers": headers}]}, env={"TOKEN": value})
    assert in_flow.value.field == "endpoints[0].headers.Authorization"
    assert "tok-SECRET-1" not in str(in_flow.value)


def test_header_names_with_control_characters_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        APIEndpoint(name="e", url="http://127.0.0.1:9/x", headers={"X-A\nB": "v"})
    assert caught.value.field == "headers.X-A\\nB"


def test_tabs_and_placeholders_in_headers_are_accepted() -> None:
    endpoint = APIEndpoint(
        name="e",
        url="http://127.0.0.1:9/x",
        headers={"X-Folded": "a\tb", "X-User": "{user_id}", "Authorization": "Bearer t"},
    )
    assert endpoint.headers == {
        "X-Folded": "a\tb",
        "X-User": "{user_id}",
        "Authorization": "Bearer t",
    }
