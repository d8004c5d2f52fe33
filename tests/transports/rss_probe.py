"""Send one GET in a fresh interpreter and print, as JSON, how it ended and how much the
peak resident memory grew (``VmHWM``) during it. Used by test_decoding.py:

    python rss_probe.py HttpxTransport|AiohttpTransport|... URL WARM_URL
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from typing import Any


def peak_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def main(name: str, url: str, warm_url: str) -> dict[str, Any]:
    import lamina.transports
    from lamina import Request

    transport = getattr(lamina.transports, name)()
    async with transport:
        await transport(Request("GET", warm_url))  # imports and a connection in place
        before = peak_kib()
        error, size = None, -1
        try:
            size = len((await transport(Request("GET", url))).content)
        except Exception as exc:
            error = type(exc).__name__
        growth = peak_kib() - before
    return {"error": error, "size": size, "growth_kib": growth}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
