"""The ``lamina`` command: run, validate and draw flows, list layers, take the demo tour.

``lamina.cli:run`` (``main`` plus the exit) is the console-script entry point;
``python -m lamina.cli`` is the same command. Exit codes: 0 success, 1 the run failed,
2 a bad invocation or an invalid flow (``error: <field>: <message>`` on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .._errors import ConfigError
from .._version import __version__

__all__ = ["build_parser", "main", "run"]

EPILOG = """examples:
  lamina demo                                   the tour, on built-in local services
  lamina validate flow.yaml                     check a flow file (secrets are masked)
  lamina graph flow.yaml                        its dependency graph, as text and Mermaid
  lamina run flow.yaml --input '{"user_id": 1}' --report run.html
  lamina run flow.yaml --json | jq .endpoints   machine-readable output on stdout only
  lamina layers                                 built-in and plugin layers, with options
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lamina`` command."""
    from ..orchestration.config import TRANSPORT_NAMES
    from . import commands
    from .demo import cmd_demo

    parser = argparse.ArgumentParser(
        prog="lamina",
        description="Run and inspect lamina flows: composable middleware for async HTTP calls.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a flow file, show progress, results and a waterfall",
        description="Run a flow file (YAML or TOML). Progress goes to stderr; the results "
        "table and waterfall (or, with --json, only JSON) go to stdout. Exit code 1 when "
        "an endpoint failed or the run stopped.",
    )
    run.add_argument("flow", metavar="FLOW", help="the flow file (.yaml, .yml or .toml)")
    run.add_argument(
        "--input",
        metavar="JSON|@FILE",
        help="the run's input data: a JSON text, @file.json, or @- for stdin",
    )
    run.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export the run's traces with OTLP/HTTP (e.g. http://localhost:4318 for Jaeger)",
    )
    run.add_argument(
        "--transport",
        choices=TRANSPORT_NAMES,
        help="send with httpx (the default), aiohttp or pyreqwest (overrides the flow's "
        "transport:; aiohttp and pyreqwest are extras: pip install 'lamina[pyreqwest]')",
    )
    _loop_option(run)
    run.add_argument("--report", metavar="FILE", help="write a self-contained HTML run report")
    run.add_argument("--json", action="store_true", help="print only JSON on stdout")
    run.add_argument(
        "-q", "--quiet", action="store_true", help="no progress display, no value after the table"
    )
    _import_options(run)
    run.set_defaults(func=commands.cmd_run)

    validate = sub.add_parser(
        "validate",
        help="check a flow file and summarise it (secrets masked)",
        description="Load and validate a flow file; print its endpoints with secrets masked.",
    )
    validate.add_argument("flow", metavar="FLOW", help="the flow file")
    _import_options(validate)
    validate.set_defaults(func=commands.cmd_validate)

    graph = sub.add_parser(
        "graph",
        help="print a flow's dependency graph (text and Mermaid)",
        description="Print the dependency graph of a flow as text and as a Mermaid flowchart.",
    )
    graph.add_argument("flow", metavar="FLOW", help="the flow file")
    graph.add_argument(
        "--format", choices=("both", "text", "mermaid"), default="both", help="default: both"
    )
    graph.set_defaults(func=commands.cmd_graph)

    layers = sub.add_parser(
        "layers",
        help="list built-in and installed plugin layers with their options",
        description="List the layers a flow can name: lamina's own and installed plugins "
        "(entry-point group 'lamina.layers').",
    )
    layers.add_argument("--json", action="store_true", help="print JSON")
    layers.set_defaults(func=commands.cmd_layers)

    demo = sub.add_parser(
        "demo",
        help="a tour on built-in local services (no internet needed)",
        description="Start local upstream services (latency, failures, rate limits, a slow "
        "one, a down one) and run sample flows in every mode against them.",
    )
    demo.add_argument("--report", metavar="FILE", help="also write an HTML report of one run")
    _loop_option(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def _loop_option(parser: argparse.ArgumentParser) -> None:
    from .._loop import LOOP_NAMES

    parser.add_argument(
        "--loop",
        choices=LOOP_NAMES,
        default="auto",
        help="the event loop: uvloop when installed (pip install 'lamina[uvloop]'), else "
        "asyncio's (default: auto)",
    )


def _import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-imports",
        action="store_true",
        help="refused (a blanket allow cannot be made safe): name the modules with "
        "--allow-imports-from",
    )
    parser.add_argument(
        "--allow-imports-from",
        metavar="PREFIX[,PREFIX]",
        action="append",
        help="let the flow import from these modules and their submodules only "
        "(repeatable); what a reference reaches must be under them too",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lamina`` command; returns the exit code."""
    from .commands import UsageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        errors = getattr(exc, "errors", None) or [exc]  # a flow's mistakes, every one
        for error in errors:
            print(_error_line(error), file=sys.stderr)
        omitted = getattr(exc, "omitted", 0)
        if omitted:
            print(
                f"{len(errors) + omitted} errors (the first {len(errors)} shown)", file=sys.stderr
            )
        elif len(errors) > 1:
            print(f"{len(errors)} errors", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"lamina {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def _error_line(exc: ConfigError) -> str:
    """``error: <field>: <message>`` (the endpoint named when the field does not)."""
    where = f"{exc.field}: " if exc.field else ""
    message = exc.message
    while where and message.startswith(where):  # ConfigError.message holds the field
        message = message[len(where) :]
    located = (exc.field or "").startswith("endpoints[")
    who = f" (endpoint {exc.endpoint!r})" if exc.endpoint and not located else ""
    return f"error: {where}{message}{who}"


def run() -> None:
    """The console script: :func:`main`, then exit with its code.

    pyreqwest 0.15's runtime threads can abort the interpreter while it finalizes
    (``PyGILState_Release: thread state ... must be current``, a known failure of
    Rust bindings on Python 3.11). When a run used it, all output is flushed and the
    process ends without finalizing, so the command's exit code is the run's.
    """
    code = main()
    if "pyreqwest" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
