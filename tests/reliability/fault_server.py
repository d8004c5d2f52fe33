"""A LocalServer in its own process with the fault-injecting ``/soak/`` route.

Run by the soak test (``python tests/reliability/fault_server.py SEED``); prints
``LISTENING <url>``. In its own process the server does not compete with the
client for the GIL, so "the server saw it" means the bytes really arrived.
``/soak-admin/stats?prefix=P`` returns hits per path under P and the injected
fault counts; ``/soak-admin/reset`` forgets both.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fault_injector import FaultInjector

from lamina.testing import LocalServer
from lamina.testing.server import RecordedRequest, Reply


class _BigBacklogServer(LocalServer):
    """asyncio's default listen backlog (100) drops SYNs when hundreds of clients
    connect at once, and a dropped SYN is retried after a whole second."""

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]


def main() -> None:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    server = _BigBacklogServer().start()
    injector = FaultInjector(seed)
    server.route("/soak/", injector)

    def stats(req: RecordedRequest) -> Reply:
        prefix = req.query.get("prefix", "/soak/")
        hits = Counter(r.path for r in server.requests() if r.path.startswith(prefix))
        return 200, {"hits": dict(hits), "injected": dict(injector.injected)}, {}

    def reset(req: RecordedRequest) -> Reply:
        server.reset()
        injector.clear()
        return 200, {"reset": True}, {}

    server.route("/soak-admin/stats", stats)
    server.route("/soak-admin/reset", reset)
    print(f"LISTENING {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
