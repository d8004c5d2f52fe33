"""Old path of :class:`lamina.transports.AiohttpTransport`."""

from .transports.aiohttp import AiohttpTransport as AiohttpTransport  # the old public import path
