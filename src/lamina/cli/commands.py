"""The ``lamina`` subcommands: run, validate, graph, layers (``demo`` is in ``cli.demo``)."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from .._closeable import AsyncCloseable
from .._core import Layer
from .._errors import ConfigError, LaminaError
from .._loop import loop_factory
from .._redact import redact_headers, redact_params, redact_url, scrub
from ..orchestration.config import (
    APIEndpoint,
    APIOrchestrationConfig,
    LayersCallable,
    TransportName,
)
from ..orchestration.report import RunReport
from .progress import LiveDisplay, Recorder, watch_layers
from .render import graph_mermaid, graph_text, results_table, run_dict, scrub_data, waterfall

__all__ = ["Flow", "FlowRunner", "cmd_graph", "cmd_layers", "cmd_run", "cmd_validate", "load"]

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
MIN_SECRET = 4  # shorter environment values are not scrubbed (they would mangle numbers)


class UsageError(Exception):
    """A bad argument found after parsing (a missing file, bad --input): exit 2."""


@dataclass
class Flow:
    """A loaded flow file: its config, its layer stack and the values to keep secret."""

    path: Path
    config: APIOrchestrationConfig
    layers: LayersCallable | None = None
    transport: TransportName | None = None
    layer_names: list[str] | None = None
    secrets: list[str] = field(default_factory=list)
    name: str | None = None
    description: str | None = None
    imports: list[Any] = field(default_factory=list)  # FlowImport: what the flow would import

    def scrub(self, text: str) -> str:
        """``text`` with every secret value replaced."""
        return scrub(text, self.secrets)


def load(path_text: str, *, allow_imports: Any = False, resolve_imports: bool = True) -> Flow:
    """Load and validate a flow file (ConfigError on a bad flow, UsageError on no file).
    With ``resolve_imports=False`` nothing the flow names is imported (validate, graph)."""
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"FLOW: no such file: {path_text}")
    from ..flows import flow_info, flow_layers, load_flow  # imported only when needed
    from ..flows.secrets import hidden_values

    config = load_flow(path, allow_imports=allow_imports, resolve_imports=resolve_imports)
    info = flow_info(config)
    hidden = hidden_values(info.substitutions)  # the classifier decides (flows.secrets)
    shown = set(info.substitutions.variables.values()) - hidden
    secrets = {
        *(v for v in _env_secrets(path) if v not in shown),
        *(v for v in hidden if len(v) >= MIN_SECRET),
    }
    flow = Flow(path, config, secrets=sorted(secrets, key=len, reverse=True))
    flow.name, flow.description, flow.imports = info.name, info.description, info.imports
    flow.transport = cast("TransportName | None", info.transport)
    layers = flow_layers(config)
    if layers is not None:
        flow.layers = layers
        flow.layer_names = [spec.name for spec in layers.specs]
    return flow


def _env_secrets(path: Path) -> list[str]:
    """Values of the environment variables the flow file refers to with ``${NAME}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    values = {os.environ.get(name, "") for name in ENV_REFERENCE.findall(text)}
    return sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True)


def import_setting(args: argparse.Namespace) -> bool | list[str]:
    """``allow_imports`` from ``--allow-imports-from A,B`` (``--allow-imports``, a blanket
    allow, is a usage error: name the modules)."""
    if getattr(args, "allow_imports", False):
        raise UsageError(
            "--allow-imports is refused: no list of refused modules is complete, so name the "
            "modules a flow may import with --allow-imports-from PREFIX[,PREFIX]"
        )
    prefixes = [
        name.strip()
        for value in getattr(args, "allow_imports_from", None) or ()
        for name in value.split(",")
        if name.strip()
    ]
    if prefixes:
        from ..flows.imports import ImportPolicy

        try:
            ImportPolicy.of(prefixes)
        except ConfigError as exc:
            raise UsageError(f"--allow-imports-from: {exc.message.partition(': ')[2]}") from None
        return prefixes
    return False


def _read_input(option: str | None) -> Any:
    if option is None:
        return None
    text = option
    if option.startswith("@"):
        source = option[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--input: cannot read {source}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"--input: {source} is not UTF-8 (byte offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input: not valid JSON: {exc}") from None


def check_output(option: str, path_text: str | None) -> None:
    """Refuse an output file that cannot be written before any call is made, not after
    (an empty name too: it would otherwise be ignored without a word)."""
    if path_text is None:
        return
    if not path_text.strip():
        raise UsageError(f"{option}: needs a file name, got an empty one")
    path = Path(path_text)
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):  # creates it, truncates nothing
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write {path_text}: {exc.strerror or exc}") from None
    if not existed:
        path.unlink(missing_ok=True)


def _write(stream: TextIO, text: str, secrets: Iterable[str]) -> None:
    stream.write(scrub(text, secrets) + "\n")
    stream.flush()


# -- lamina run ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What a CLI run produced: the report (when there is one) and what stopped it."""

    report: RunReport | None
    recorder: Recorder
    error: BaseException | None = None


class FlowRunner(AsyncCloseable):
    """Runs ``config`` on one orchestrator, recording every call as ``lamina run`` shows it.

    Breakers, limiters, cache and metrics carry over from one :meth:`run` to the next,
    as on any orchestrator; each run gets its own record. One run at a time.
    """

    def __init__(
        self,
        config: APIOrchestrationConfig,
        *,
        layers: LayersCallable | None = None,
        transport: TransportName | None = None,
    ) -> None:
        from ..orchestration.orchestrator import APIOrchestrator, with_parse

        recorder = self._recorder = Recorder()
        base: LayersCallable = layers if layers is not None else APIOrchestrator.default_layers

        def stack(endpoint: APIEndpoint, cfg: APIOrchestrationConfig) -> list[Layer]:
            # the parse layer a list without one gets, inside the progress layer
            return watch_layers(recorder, with_parse(list(base(endpoint, cfg)), endpoint, cfg))

        self.orchestrator = APIOrchestrator(config, layers=stack, transport=transport)
        recorder.clock = self.orchestrator.clock

    async def run(self, data: Any, *, display: LiveDisplay | None = None) -> Outcome:
        """Run once; a stopping LaminaError is returned in the outcome, not raised."""
        recorder = self._recorder
        recorder.timelines = {}  # this run's; the outcome keeps them (a copy of the recorder)
        recorder.display = display
        recorder.begin()
        try:
            report = await self.orchestrator.run(data)
        except LaminaError as exc:
            return Outcome(exc.report, copy.copy(recorder), exc)
        finally:
            if display is not None:
                display.finish()
        return Outcome(report, copy.copy(recorder))

    async def aclose(self) -> None:
        """Close the orchestrator's connections."""
        await self.orchestrator.aclose()


async def run_flow(
    config: APIOrchestrationConfig,
    data: Any,
    *,
    layers: LayersCallable | None = None,
    transport: TransportName | None = None,
    display: LiveDisplay | None = None,
) -> Outcome:
    """Run ``config`` once, recording every call; a stopping LaminaError is returned."""
    async with FlowRunner(config, layers=layers, transport=transport) as runner:
        return await runner.run(data, display=display)


def cmd_run(args: argparse.Namespace) -> int:
    """``lamina run FLOW``: run a flow and show what happened."""
    flow = load(args.flow, allow_imports=import_setting(args))
    data = _read_input(args.input)
    check_output("--report", args.report)
    new_loop = loop_factory(args.loop, field="--loop")  # uvloop missing: one line, exit 2
    telemetry = None
    if args.otlp_endpoint:
        from .._extras import MissingExtra
        from .otlp import CliTelemetry

        try:
            telemetry = CliTelemetry(args.otlp_endpoint, flow.secrets)
        except MissingExtra as exc:  # before any call: one line, exit 2
            raise UsageError(f"--otlp-endpoint: {exc.message.partition(': ')[2]}") from None
    from .._redact import log_warnings_scrubbed  # a flow's log_requests/log_responses lines

    log_warnings_scrubbed(flow.secrets)  # reach stderr without its ${ENV} values
    display = None if args.quiet else LiveDisplay(flow.config.endpoint_names, sys.stderr)
    try:
        transport = args.transport or flow.transport
        with asyncio.Runner(loop_factory=new_loop) as runner:
            outcome = runner.run(
                run_flow(
                    flow.config, data, layers=flow.layers, transport=transport, display=display
                )
            )
    finally:
        warning = telemetry.finish() if telemetry is not None else None
    try:
        return _show(args, flow, outcome)
    finally:
        if warning is not None:  # the export's one line, after everything else
            _write(sys.stderr, warning, flow.secrets)


def _show(args: argparse.Namespace, flow: Flow, outcome: Outcome) -> int:
    """Print (and write) what the run did; returns the exit code."""
    report, timelines = outcome.report, outcome.recorder.timelines
    if outcome.error is not None:
        _write(sys.stderr, f"error: run stopped: {outcome.error}", flow.secrets)
    if report is None:
        return 1
    # what the requests sent as secrets (headers, query values, user info), which an
    # upstream may answer back into the value, besides the flow's ${ENV} values
    sent = {s for r in report.endpoints.values() for s in r.secrets if len(s) >= MIN_SECRET}
    secrets = sorted({*flow.secrets, *sent}, key=len, reverse=True)
    if args.report:
        from .report_html import write_html

        try:
            path = write_html(
                args.report,
                report,
                flow.config,
                timelines,
                title=f"lamina run {flow.name or flow.path.name}",
                secrets=flow.secrets,
            )
        except OSError as exc:  # checked before the run: a late failure (disk full)
            error = exc.strerror or exc
            raise UsageError(f"--report: cannot write {args.report}: {error}") from None
        print(f"report written to {path}", file=sys.stderr)
    if args.json:
        data_out = run_dict(report, timelines)
        if outcome.error is not None:
            data_out["ok"] = False
            data_out["error"] = f"{type(outcome.error).__name__}: {outcome.error}"
        # Scrub the strings, then serialize: scrubbing the JSON text would hit its own
        # tokens (an ${ENV} value "true", "null" or "1234") and leave invalid JSON.
        print(json.dumps(scrub_data(data_out, secrets), indent=2, default=str), flush=True)
    else:
        value = [] if args.quiet else [_value_text(report.value, secrets)]
        text = "\n\n".join(
            [
                *([report.chaos_banner()] if report.chaos else []),  # fault injection was on
                results_table(report, timelines, secrets),
                *value,
                waterfall(report, timelines),
                f"{report.mode} run: {report.duration * 1000:.0f} ms, "
                f"critical path {' -> '.join(report.critical_path) or '-'}, "
                f"{'ok' if report.ok and outcome.error is None else 'FAILED'}",
            ]
        )
        _write(sys.stdout, text, secrets)
    return 0 if report.ok and outcome.error is None else 1


def _value_text(value: Any, secrets: Iterable[str]) -> str:
    """``value:`` and the flow's value as JSON, its strings scrubbed before serializing."""
    return "value:\n" + json.dumps(scrub_data(value, secrets), indent=2, default=str)


# -- lamina validate / graph -----------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    """``lamina validate FLOW``: load a flow, report what it holds (secrets masked).
    Imports nothing: lists the flow's import references and whether the
    ``--allow-imports`` setting given would let ``lamina run`` import them (exit 2 if not)."""
    from ..flows.imports import ImportPolicy

    setting = import_setting(args)
    flow = load(args.flow, allow_imports=setting, resolve_imports=False)
    config = flow.config
    timeout = "none" if config.total_timeout is None else f"{config.total_timeout:g} s"
    refused = [i for i in flow.imports if not i.allowed]
    verdict = f"valid, but {len(refused)} import(s) refused" if refused else "valid"
    lines = [
        f"{flow.path}: {verdict}" + (f" ({flow.name})" if flow.name else ""),
        *([flow.description.strip()] if flow.description else []),
        f"mode {config.mode.value}, {len(config.endpoints)} endpoints, "
        f"max_concurrent {config.max_concurrent}, total_timeout {timeout}, "
        f"fail_fast {config.fail_fast}",
        f"layers: {', '.join(flow.layer_names) if flow.layer_names else 'the default stack'}",
    ]
    for e in config.endpoints:
        lines.append(f"  {e.name}: {e.method} {redact_url(e.url)}")
        details = []
        if e.headers:
            details.append(
                "headers "
                + ", ".join(f"{k}={v}" for k, v in redact_headers(dict(e.headers).items()).items())
            )
        if e.params:
            details.append(
                "params " + ", ".join(f"{k}={v}" for k, v in redact_params(e.params).items())
            )
        if e.dependencies:
            details.append(f"depends on {', '.join(e.dependencies)}")
        details.append(f"timeout {e.timeout:g} s, retries {e.retry_count}")
        if e.condition is not None:
            details.append("has a condition")
        lines.append(f"    {'; '.join(details)}")
    if flow.imports:
        lines.append(f"imports (not imported by validate; {ImportPolicy.of(setting).describe()}):")
        for item in flow.imports:
            lines.append(f"  {item.field}: {item.reference} ({item.refused or 'allowed'})")
    _write(sys.stdout, "\n".join(lines), flow.secrets)
    if refused:
        first = refused[0]
        _write(
            sys.stderr,
            f"error: {first.field}: import of {first.reference!r} refused: {first.refused}",
            flow.secrets,
        )
        return 2
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """``lamina graph FLOW``: the dependency graph as text and/or Mermaid (imports nothing)."""
    flow = load(args.flow, resolve_imports=False)
    parts = []
    if args.format in ("text", "both"):
        parts.append(graph_text(flow.config))
    if args.format in ("mermaid", "both"):
        parts.append(graph_mermaid(flow.config))
    _write(sys.stdout, "\n\n".join(parts), flow.secrets)
    return 0


# -- lamina layers -----------------------------------------------------------------------


def layer_rows() -> list[dict[str, Any]]:
    """Every layer lamina can build by name: built-ins, then installed plugins."""
    try:
        from ..plugins import available_layers
    except ImportError:  # pragma: no cover - plugins ship with lamina
        return _fallback_rows()
    rows = []
    for name, plugin in available_layers().items():
        row: dict[str, Any] = {
            "name": name,
            "target": plugin.value,
            "package": plugin.package,
            "builtin": plugin.builtin,
        }
        try:
            plugin.load()
            row["options"] = plugin.options()
            row["error"] = None
        except ConfigError as exc:
            row["options"] = []
            row["error"] = exc.message
        rows.append(row)
    from ..plugins import clash_message, clashing_plugins

    for plugin in clashing_plugins():  # a plugin taking a built-in's name is shown, unused
        rows.append(
            {
                "name": plugin.name,
                "target": plugin.value,
                "package": plugin.package,
                "builtin": False,
                "options": [],
                "error": clash_message(plugin),
            }
        )
    return rows


def _fallback_rows() -> list[dict[str, Any]]:
    import inspect

    from .. import layers as builtin

    rows = []
    for name in builtin.__all__:
        target = getattr(builtin, name)
        if inspect.isclass(target) and callable(getattr(target, "wrap", None)):
            params = inspect.signature(target).parameters.values()
            options = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            rows.append(
                {
                    "name": name,
                    "target": f"{target.__module__}:{name}",
                    "package": "lamina (built-in)",
                    "builtin": True,
                    "options": options,
                    "error": None,
                }
            )
    return rows


def cmd_layers(args: argparse.Namespace) -> int:
    """``lamina layers``: built-in and plugin layers with their options."""
    rows = layer_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for title, builtin in (("built-in layers", True), ("plugin layers", False)):
        group = [r for r in rows if r["builtin"] is builtin]
        print(f"{title}:")
        if not group:
            print("  (none installed: see docs/plugins.md to write one)")
        for row in group:
            source = "" if builtin else f"  [{row['package']}]"
            print(f"  {row['name']}  ({row['target']}){source}")
            if row["error"]:
                print(f"      error: {row['error']}")
            elif row["options"]:
                print(f"      options: {', '.join(row['options'])}")
            else:
                print("      options: none")
    broken = [r["name"] for r in rows if r["error"]]
    if broken:
        print(
            f"warning: {len(broken)} layer(s) cannot be used: {', '.join(broken)}", file=sys.stderr
        )
    return 0
