"""``python -m lamina.testing [PORT]``: run the local test server in the foreground."""

from .server import main

main()
