from .layers.circuit_breaker import *  # noqa: F403  (lamina.breaker: the documented old path)
from .layers.circuit_breaker import BreakerBackend as BreakerBackend  # deprecated name
from .layers.circuit_breaker import MemoryBackend as MemoryBackend  # deprecated name
