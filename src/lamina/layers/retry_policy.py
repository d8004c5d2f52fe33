from .retry import *  # noqa: F403  (lamina.layers.retry_policy: the documented old path)
