"""Say aloud what ``execute()`` turns into a value: one WARNING per endpoint that
failed, whose failure a handler turned into a value, or that was skipped because
an endpoint it depends on did not succeed. ``run()`` returns the whole report instead."""

from __future__ import annotations

import logging

from .._redact import scrub_clip
from .report import EndpointReport, RunReport

__all__ = ["MAX_MESSAGE_CHARS", "log_failures"]

logger = logging.getLogger("lamina")
#: Where the value of an endpoint that failed came from, by outcome.
SOURCES = {
    "handled": "its value is the error_handler's (handled)",
    "fallback": "its value is the fallback's",
    "stale": "its value is a stale cached response",
}
#: Longest error message a warning quotes (the run report holds the whole of it).
MAX_MESSAGE_CHARS = 500


def _error(report: EndpointReport) -> str:
    """``Type: message``, scrubbed of the request's secrets and clipped."""
    error = report.error
    if error is None:  # a report filled in by hand
        return report.outcome
    message = scrub_clip(str(error), report.secrets, MAX_MESSAGE_CHARS)
    return f"{type(error).__name__}: {message}"


def _root(report: RunReport, name: str) -> EndpointReport | None:
    """The dependency whose failure (or cancellation) made ``name`` skip."""
    seen: set[str] = set()
    pending = list(report.endpoints[name].depends_on)
    while pending:
        dep = report.endpoints.get(pending.pop(0))
        if dep is None or dep.name in seen:
            continue
        seen.add(dep.name)
        if dep.outcome in ("failed", "cancelled"):
            return dep
        if dep.outcome == "skipped" and (dep.reason or "").startswith("dependency"):
            pending.extend(dep.depends_on)
    return None


def log_failures(report: RunReport) -> None:
    """One WARNING on the ``lamina`` logger per endpoint of ``report`` that did not
    produce its own value: the endpoint, the error's class and its scrubbed message."""
    if not logger.isEnabledFor(logging.WARNING):
        return
    for r in report.endpoints.values():
        if r.outcome == "failed":
            logger.warning("endpoint '%s' failed, its value is None: %s", r.name, _error(r))
        elif r.error is not None:  # handled (an error_handler's value), a fallback ...
            logger.warning(
                "endpoint '%s' failed, %s: %s",
                r.name,
                SOURCES.get(r.outcome, f"outcome {r.outcome}"),
                _error(r),
            )
        elif r.outcome == "skipped" and (r.reason or "").startswith("dependency"):
            root = _root(report, r.name)
            cause = f": '{root.name}' {root.outcome}: {_error(root)}" if root else ""
            logger.warning(
                "endpoint '%s' skipped, its value is None: %s%s", r.name, r.reason, cause
            )
