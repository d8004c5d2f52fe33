from .layers.circuit_breaker import *  # noqa: F403  (lamina.breaker: the documented old path)
