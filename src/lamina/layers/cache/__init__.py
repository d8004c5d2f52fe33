"""The response cache: the layer and its service, keys, RFC 9111 storability, entries,
stores (in memory and in Redis), single-flight and the cache they share."""

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
from .layer import (
    BYPASS,
    CACHE_MODE,
    REFRESH,
    SECRET_REFRESH,
    SECRET_RETRY,
    CacheLayer,
    CacheService,
)
from .layer import Cache as Cache  # deprecated name of CacheService
from .policy import (
    Storable,
    has_validator,
    parse_cache_control,
    serves_stale,
    storable,
    store_decision,
)
from .redis import RedisCacheStore
from .shared import SharedCache
from .store import (
    CacheStore,
    MemoryCacheStore,
    ReplacingCacheStore,
    SharedSecretStore,
    SyncCacheStore,
)
from .store import MemoryStore as MemoryStore  # deprecated name

__all__ = [
    "BYPASS",
    "CACHE_MODE",
    "ENV_SECRET",
    "IGNORED_HEADERS",
    "REFRESH",
    "SECRET_REFRESH",
    "SECRET_RETRY",
    "CacheEntry",
    "CacheLayer",
    "CacheService",
    "CacheStore",
    "KeyFunction",
    "KeyScheme",
    "MemoryCacheStore",
    "RedisCacheStore",
    "ReplacingCacheStore",
    "SharedCache",
    "SharedSecretStore",
    "SingleFlight",
    "Storable",
    "SyncCacheStore",
    "credentials_digest",
    "default_key",
    "has_validator",
    "identity_digest",
    "parse_cache_control",
    "scoped_key",
    "serves_stale",
    "storable",
    "store_decision",
]
