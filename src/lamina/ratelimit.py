from .layers.rate_limit import *  # noqa: F403  (lamina.ratelimit: the reference's path, kept)
