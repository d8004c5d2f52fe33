"""Old path of :class:`lamina.transports.HttpxTransport`."""

from .transports.httpx import HttpxTransport as HttpxTransport  # the old public import path
