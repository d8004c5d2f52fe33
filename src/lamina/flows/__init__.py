"""Declarative flows: an orchestration written as YAML, TOML, JSON or a dict.

::

    from lamina.flows import load_flow, build_orchestrator

    config = load_flow("flow.yaml")          # validated; ConfigError names the place
    orchestrator = build_orchestrator(config)  # honours the flow's layers: list

See docs/flows.md for the format, hooks (import references or JMESPath) and
``${VAR}`` substitution. A flow is data: its import references are refused unless the
caller passes ``allow_imports`` (:mod:`lamina.flows.imports`), and a hostile file ends in
ConfigError within the limits of :mod:`lamina.flows.limits`.
"""

from .config import (
    CONFIG_KEYS,
    ENDPOINT_KEYS,
    FlowInfo,
    config_from_dict,
    config_to_dict,
    flow_info,
    flow_layers,
)
from .describe import build_orchestrator, describe_flow
from .env import substitute
from .expressions import HOOK_FIELDS, Expression, ImportedHook, hook_from_spec, hook_to_spec
from .imports import REFUSED_MODULES, FlowImport, ImportPolicy, PendingImport
from .layers import DEFAULTS, FlowLayers, LayerSpec, parse_layers
from .limits import MAX_FLOW_BYTES, MAX_FLOW_DEPTH, MAX_FLOW_VALUES
from .loader import load_flow, parse_flow_text
from .problems import FlowErrors

__all__ = [
    "CONFIG_KEYS",
    "DEFAULTS",
    "ENDPOINT_KEYS",
    "HOOK_FIELDS",
    "MAX_FLOW_BYTES",
    "MAX_FLOW_DEPTH",
    "MAX_FLOW_VALUES",
    "REFUSED_MODULES",
    "Expression",
    "FlowErrors",
    "FlowImport",
    "FlowInfo",
    "FlowLayers",
    "ImportPolicy",
    "ImportedHook",
    "LayerSpec",
    "PendingImport",
    "build_orchestrator",
    "config_from_dict",
    "config_to_dict",
    "describe_flow",
    "flow_info",
    "flow_layers",
    "hook_from_spec",
    "hook_to_spec",
    "load_flow",
    "parse_flow_text",
    "parse_layers",
    "substitute",
]
