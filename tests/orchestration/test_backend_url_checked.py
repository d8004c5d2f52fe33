"""A Redis backend URL that cannot be used fails at construction naming the field, without
the URL (its password) in the message; it was accepted, and every call failed at run time
with a bare ``ValueError: Port out of range 0-65535``."""

from __future__ import annotations

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, ConfigError


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2pass@localhost:99999/0",
        "redis://:hunter2pass@localhost:port/0",
        "rediss://u:hunter2pass@[::1/0",
    ],
)
def test_a_redis_url_with_a_bad_port_or_host_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        APIOrchestrationConfig(endpoints=[APIEndpoint(name="a", url="http://x/")], backend=url)
    assert caught.value.field == "backend"
    assert "hunter2pass" not in str(caught.value)


def test_a_good_redis_url_is_accepted() -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://x/")], backend="redis://localhost:6379/0"
    )
    assert "redis" in repr(config)
