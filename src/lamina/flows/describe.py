"""A printable, secret-free view of a flow, and an orchestrator that honours its layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._redact import REDACTED, is_secret, redact_url, scrub
from ..orchestration.config import APIOrchestrationConfig
from ..orchestration.orchestrator import APIOrchestrator
from .config import config_to_dict, flow_info, flow_layers
from .secrets import hidden_values

__all__ = ["build_orchestrator", "describe_flow"]


def describe_flow(config: APIOrchestrationConfig) -> dict[str, Any]:
    """``config`` as a flow mapping that is safe to print or log.

    Values from the environment show as their ``${VAR}`` template; secret headers
    and query parameters (by :mod:`lamina.redact`'s classifier), URL user info and a
    backend URL's password are masked; every environment value that
    :func:`lamina.flows.secrets.hidden_values` hides (a secret-named variable, a value in a
    secret place) is scrubbed anywhere it is left, in any encoding; Python hooks that
    cannot be written as a flow show as ``<python ...>``. Never raises for hooks.
    """
    info = flow_info(config)
    out = config_to_dict(config, strict=False)
    if isinstance(out.get("backend"), str):
        out["backend"] = redact_url(out["backend"])
    for endpoint in out.get("endpoints", []):
        if "url" in endpoint:
            endpoint["url"] = redact_url(endpoint["url"])
        if isinstance(endpoint.get("headers"), Mapping):
            endpoint["headers"] = {
                k: (REDACTED if is_secret(k) else v) for k, v in endpoint["headers"].items()
            }
        if isinstance(endpoint.get("params"), Mapping):
            endpoint["params"] = {
                k: (REDACTED if is_secret(k) else v) for k, v in endpoint["params"].items()
            }
    secrets = hidden_values(info.substitutions)
    return _scrub(out, secrets) if secrets else out


def _scrub(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def build_orchestrator(config: APIOrchestrationConfig, **kwargs: Any) -> APIOrchestrator:
    """``APIOrchestrator(config, layers=<the flow's layers:>, transport=<its transport:>,
    **kwargs)``.

    Without a ``layers:`` list (or with ``layers=`` given here) it is the plain
    orchestrator with the default stack; without ``transport:``, the default transport.
    """
    if "layers" not in kwargs:
        kwargs["layers"] = flow_layers(config)
    if "transport" not in kwargs and "client" not in kwargs:
        kwargs["transport"] = flow_info(config).transport
    return APIOrchestrator(config, **kwargs)
