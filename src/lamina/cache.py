from .layers.cache import *  # noqa: F403  (lamina.cache: the documented old path, kept for imports)
