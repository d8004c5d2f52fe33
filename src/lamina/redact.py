"""What lamina treats as secret, and the scrubber every output uses.

One classifier decides which header and query-parameter names carry secrets;
every output uses it: forwarding on a cross-origin redirect, reprs of requests,
headers, endpoints and configs, log records, span attributes and events, error
messages, run reports and the CLI. ::

    from lamina.redact import add_secret_names, is_secret, scrub

    is_secret("X-RapidAPI-Key")          # True: holds "key"
    is_secret("author")                  # False: an everyday word
    add_secret_names(["X-Tenant-Pin"])   # yours, process-wide from now on
    scrub(text, [token])                 # token gone, raw or escaped

Set ``LAMINA_SECRET_NAMES=name1,name2`` to add names without code (the CLI too).
See ``docs/security.md`` for the rules and the list of names.
"""

from ._redact import (
    MIN_SECRET_CHARS,
    NOT_SECRET_WORDS,
    PUBLIC_NAMES,
    REDACTED,
    SECRET_HEADERS,
    SECRET_PARAMS,
    SECRET_STEMS,
    SECRET_WORDS,
    RedactingLogFilter,
    SecretClassifier,
    add_secret_names,
    default_classifier,
    is_secret,
    redact_body,
    redact_headers,
    redact_params,
    redact_text,
    redact_url,
    scrub,
    secret_values,
    set_default_classifier,
)

__all__ = [
    "MIN_SECRET_CHARS",
    "NOT_SECRET_WORDS",
    "PUBLIC_NAMES",
    "REDACTED",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "SECRET_STEMS",
    "SECRET_WORDS",
    "RedactingLogFilter",
    "SecretClassifier",
    "add_secret_names",
    "default_classifier",
    "is_secret",
    "redact_body",
    "redact_headers",
    "redact_params",
    "redact_text",
    "redact_url",
    "scrub",
    "secret_values",
    "set_default_classifier",
]
