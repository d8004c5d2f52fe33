"""``python -m lamina.testing [PORT]``: run the local test server, with the sample
upstream APIs, in the foreground (the sample flows expect port 8765)."""

import sys
import time

from .server import LocalServer
from .upstreams import install

args = sys.argv[1:]
server = install(LocalServer(port=int(args[0]) if args else 0)).start()
print(f"LISTENING {server.url}", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    server.stop()
