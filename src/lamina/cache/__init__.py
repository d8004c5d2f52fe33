"""The response cache's parts: keys, storability policy, stores and single-flight.

The layer itself is :class:`lamina.layers.cache.CacheLayer`.
"""

from .entry import CacheEntry
from .flight import SingleFlight
from .keys import (
    ENV_SECRET,
    IGNORED_HEADERS,
    KeyFunction,
    KeyScheme,
    credentials_digest,
    default_key,
    identity_digest,
    scoped_key,
)
from .policy import Storable, parse_cache_control, serves_stale, storable
from .store import CacheStore, MemoryStore, SharedSecretStore, SyncCacheStore

__all__ = [
    "ENV_SECRET",
    "IGNORED_HEADERS",
    "CacheEntry",
    "CacheStore",
    "KeyFunction",
    "KeyScheme",
    "MemoryStore",
    "SharedSecretStore",
    "SingleFlight",
    "Storable",
    "SyncCacheStore",
    "credentials_digest",
    "default_key",
    "identity_digest",
    "parse_cache_control",
    "scoped_key",
    "serves_stale",
    "storable",
]
