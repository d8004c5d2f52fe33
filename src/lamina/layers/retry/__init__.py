"""Retries: the layer and its service (the loop, sleeps, deadline), the policy that
answers "retry after N seconds, or stop?", and the budget that bounds retries."""

from .budget import RetryBudget
from .layer import (
    DEFAULT_ATTEMPTS,
    IDEMPOTENCY_KEY_HEADER,
    RetryLayer,
    RetryService,
    new_idempotency_key,
)
from .layer import Retry as Retry  # deprecated name of RetryService
from .policy import (
    DEFAULT_RETRY_ON,
    IDEMPOTENT_METHODS,
    RetryOutcome,
    RetryPolicy,
    StatusRetryPolicy,
    is_idempotent,
    parse_retry_after,
    retry_after,
)

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_RETRY_ON",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENT_METHODS",
    "RetryBudget",
    "RetryLayer",
    "RetryOutcome",
    "RetryPolicy",
    "RetryService",
    "StatusRetryPolicy",
    "is_idempotent",
    "new_idempotency_key",
    "parse_retry_after",
    "retry_after",
]
