"""Ready-made orchestrators for common shapes: chains, aggregators, REST and GraphQL."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ConfigError
from .config import APIEndpoint, APIOrchestrationConfig, OrchestrationMode
from .orchestrator import APIOrchestrator

__all__ = [
    "create_graphql_orchestrator",
    "create_parallel_aggregator",
    "create_rest_api_orchestrator",
    "create_sequential_api_chain",
]

EndpointSpec = tuple[str, str] | APIEndpoint


def _endpoints(
    specs: Sequence[EndpointSpec], headers: Mapping[str, str] | None, **fields: Any
) -> list[APIEndpoint]:
    built = []
    for index, spec in enumerate(specs):
        if isinstance(spec, APIEndpoint):
            built.append(spec)
            continue
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise ConfigError("must be (name, url) or an APIEndpoint", field=f"endpoints[{index}]")
        name, url = spec
        built.append(
            APIEndpoint(name=name, url=url, headers=dict(headers) if headers else None, **fields)
        )
    return built


def create_sequential_api_chain(
    endpoints: Sequence[EndpointSpec],
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    timeout: float = 30.0,
    **config: Any,
) -> APIOrchestrator:
    """Call ``(name, url)`` endpoints one after another; each depends on the one before,
    so a failed step skips the rest. ``config`` goes to :class:`APIOrchestrationConfig`."""
    built = _endpoints(endpoints, headers, method=method, timeout=timeout)
    for previous, endpoint in itertools.pairwise(built):
        if previous.name not in endpoint.dependencies:
            endpoint.depends_on = [*endpoint.dependencies, previous.name]
    return APIOrchestrator(
        APIOrchestrationConfig(endpoints=built, mode=OrchestrationMode.SEQUENTIAL, **config)
    )


def create_parallel_aggregator(
    endpoints: Sequence[EndpointSpec],
    *,
    max_concurrent: int = 10,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    **config: Any,
) -> APIOrchestrator:
    """Call every ``(name, url)`` endpoint at once; ``execute()`` returns ``{name: result}``."""
    built = _endpoints(endpoints, headers, timeout=timeout)
    return APIOrchestrator(
        APIOrchestrationConfig(
            endpoints=built,
            mode=OrchestrationMode.PARALLEL,
            max_concurrent=max_concurrent,
            **config,
        )
    )


def _auth(auth_token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth_token}"} if auth_token else {}


def create_rest_api_orchestrator(
    base_url: str,
    endpoints: Sequence[Mapping[str, Any]],
    auth_token: str | None = None,
    rate_limit: float | None = 60,
    mode: OrchestrationMode = OrchestrationMode.SEQUENTIAL,
    **config: Any,
) -> APIOrchestrator:
    """Endpoints given as dicts with ``name`` and ``path`` (plus any APIEndpoint field)
    under one ``base_url``, with a bearer token and a global ``rate_limit`` per minute."""
    built = []
    for index, spec in enumerate(endpoints):
        fields = dict(spec)
        if "name" not in fields or "path" not in fields:
            raise ConfigError("needs 'name' and 'path'", field=f"endpoints[{index}]")
        path = str(fields.pop("path"))
        fields["url"] = base_url.rstrip("/") + "/" + path.lstrip("/")
        fields["headers"] = {**_auth(auth_token), **(fields.get("headers") or {})}
        try:
            built.append(APIEndpoint(**fields))
        except TypeError as exc:
            raise ConfigError(str(exc), field=f"endpoints[{index}]") from None
    return APIOrchestrator(
        APIOrchestrationConfig(endpoints=built, mode=mode, global_rate_limit=rate_limit, **config)
    )


def _graphql_data(response: Any) -> Any:
    payload = response.json()
    if payload.get("errors") and payload.get("data") is None:
        messages = "; ".join(str(e.get("message", e)) for e in payload["errors"])
        raise ValueError(f"GraphQL errors: {messages}")
    return payload.get("data")


def _graphql_batch(response: Any) -> Any:
    payload = response.json()
    if not isinstance(payload, list):
        return _graphql_data(response)
    return [item.get("data") for item in payload]


def create_graphql_orchestrator(
    endpoint: str,
    queries: Sequence[Mapping[str, Any]],
    auth_token: str | None = None,
    batch_queries: bool = True,
    **config: Any,
) -> APIOrchestrator:
    """GraphQL operations (dicts with ``query``, optional ``variables`` and ``name``).

    With ``batch_queries`` they go in one POST as a JSON array (the common batching
    format) and the result is the list of ``data``; otherwise one POST per query,
    in parallel, and each result is its ``data`` (errors without data fail the call).
    """
    headers = _auth(auth_token)
    operations = []
    for index, query in enumerate(queries):
        if "query" not in query:
            raise ConfigError("needs a 'query'", field=f"queries[{index}]")
        operations.append({"query": query["query"], "variables": dict(query.get("variables", {}))})
    if batch_queries:
        built = [
            APIEndpoint(
                name="graphql_batch",
                url=endpoint,
                method="POST",
                headers=headers or None,
                body=operations,
                response_parser=_graphql_batch,
            )
        ]
        mode = OrchestrationMode.SEQUENTIAL
    else:
        built = [
            APIEndpoint(
                name=str(query.get("name", f"query_{index}")),
                url=endpoint,
                method="POST",
                headers=headers or None,
                body=operation,
                response_parser=_graphql_data,
            )
            for index, (query, operation) in enumerate(zip(queries, operations, strict=True))
        ]
        mode = OrchestrationMode.PARALLEL
    return APIOrchestrator(APIOrchestrationConfig(endpoints=built, mode=mode, **config))
