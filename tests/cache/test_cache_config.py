"""The orchestrator's ``cache_headers``: validated, carried by flows, wired into the cache."""

from __future__ import annotations

from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, ConfigError
from lamina.flows import config_from_dict, config_to_dict
from lamina.layers.cache import IGNORED_HEADERS
from lamina.orchestration.stack import new_shared_state


def config(**kw: Any) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="items", url="http://api.test/items")], **kw
    )


def test_cache_headers_are_normalised() -> None:
    made = config(cache_ttl=60, cache_headers={"ignore": ["X-Client-Build"], "include": ["Accept"]})
    assert made.cache_headers == {"ignore": ["x-client-build"], "include": ["accept"]}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (["x-a"], "cache_headers"),
        ({"ignored": ["x-a"]}, "cache_headers"),
        ({"ignore": "X-A"}, "cache_headers.ignore"),
        ({"include": ["bad name"]}, "cache_headers.include"),
        ({"ignore": ["X-Api-Key"]}, "cache_headers.ignore"),  # a credential stays keyed
        ({"ignore": ["x-a"], "include": ["X-A"]}, "cache_headers.ignore"),
    ],
)
def test_bad_cache_headers_name_the_field(value: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(cache_ttl=60, cache_headers=value)
    assert info.value.field == field


def test_cache_headers_reach_the_default_cache_layer() -> None:
    made = config(cache_ttl=60, cache_headers={"ignore": ["X-Client-Build"], "include": ["Accept"]})
    cache = new_shared_state(made).cache
    assert cache is not None
    assert cache.ignored_headers == (IGNORED_HEADERS | {"x-client-build"}) - {"accept"}
    plain = new_shared_state(config(cache_ttl=60)).cache
    assert plain is not None
    assert plain.ignored_headers == IGNORED_HEADERS


def test_cache_headers_round_trip_through_a_flow() -> None:
    made = config(cache_ttl=60, cache_headers={"include": ["User-Agent"]})
    data = config_to_dict(made)
    assert data["cache_headers"] == {"ignore": [], "include": ["user-agent"]}
    again = config_from_dict(data)
    assert again.cache_headers == made.cache_headers
