from .layers.cache import *  # noqa: F403  (lamina.cache: the documented old path, kept for imports)
from .layers.cache import MemoryStore as MemoryStore  # deprecated name
