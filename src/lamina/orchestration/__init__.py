"""The preset orchestrator: configuration, runs, reports and factories."""

from .config import APIEndpoint, APIOrchestrationConfig, OrchestrationMode
from .factories import (
    create_graphql_orchestrator,
    create_parallel_aggregator,
    create_rest_api_orchestrator,
    create_sequential_api_chain,
)
from .orchestrator import APIOrchestrator
from .report import EndpointReport, RunReport

__all__ = [
    "APIEndpoint",
    "APIOrchestrationConfig",
    "APIOrchestrator",
    "EndpointReport",
    "OrchestrationMode",
    "RunReport",
    "create_graphql_orchestrator",
    "create_parallel_aggregator",
    "create_rest_api_orchestrator",
    "create_sequential_api_chain",
]
