"""``python -m lamina.testing [PORT]``: run the local test server, with the sample
upstream APIs, in the foreground (the sample flows expect port 8765)."""

import argparse
import time

from .server import LocalServer
from .upstreams import install

parser = argparse.ArgumentParser(
    prog="python -m lamina.testing",
    description="Run lamina's local test server with the sample upstream APIs in the "
    "foreground, until Ctrl-C. It prints 'LISTENING <url>' once it accepts connections.",
    epilog="routes: /json /echo /status/<code> /flaky/<key>?fail=N /retry-after/<key> "
    "/hang /large /text /redirect ... (every route takes ?ms=N; see lamina.testing.server). "
    "The flows in examples/flows expect port 8765.",
)
parser.add_argument(
    "port",
    metavar="PORT",
    nargs="?",
    type=int,
    default=0,
    help="the port on 127.0.0.1 to listen on (default: a free one)",
)
args = parser.parse_args()
if not 0 <= args.port <= 65535:
    parser.error(f"argument PORT: {args.port} is not a port number (0-65535)")
try:
    server = install(LocalServer(port=args.port)).start()
except OSError as exc:  # the port is taken, or not ours to use: one line, not a traceback
    parser.exit(
        2, f"{parser.prog}: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}\n"
    )
print(f"LISTENING {server.url}", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    server.stop()
