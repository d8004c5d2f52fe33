"""The run recorder, the live display and the text views, in-process on a real server."""

from __future__ import annotations

import io

from lamina import APIEndpoint, APIOrchestrationConfig, OrchestrationMode
from lamina.cli.commands import FlowRunner
from lamina.cli.progress import AttemptLayer, LiveDisplay, ProgressLayer, watch_layers
from lamina.cli.render import graph_mermaid, graph_text, results_table, waterfall
from lamina.layers.retry import RetryLayer
from lamina.layers.timeout import TimeoutLayer
from lamina.orchestration.orchestrator import APIOrchestrator
from lamina.testing import LocalServer


def test_watch_layers_places_attempt_layer_inside_retry() -> None:
    endpoint = APIEndpoint(name="a", url="http://127.0.0.1:1/x")
    config = APIOrchestrationConfig(endpoints=[endpoint])
    from lamina.cli.progress import Recorder

    layers = watch_layers(Recorder(), APIOrchestrator.default_layers(endpoint, config))
    assert isinstance(layers[0], ProgressLayer)
    index = next(i for i, lay in enumerate(layers) if isinstance(lay, AttemptLayer))
    assert isinstance(layers[index - 1], RetryLayer)
    no_retry = APIEndpoint(name="b", url="http://127.0.0.1:1/x", retry_count=0)
    config = APIOrchestrationConfig(endpoints=[no_retry])
    layers = watch_layers(Recorder(), APIOrchestrator.default_layers(no_retry, config))
    index = next(i for i, lay in enumerate(layers) if isinstance(lay, AttemptLayer))
    assert not any(isinstance(lay, RetryLayer) for lay in layers)
    assert any(isinstance(lay, TimeoutLayer) for lay in layers[index:])


async def test_recorder_sees_attempts_retry_waits_and_cache_hits(
    lamina_server: LocalServer,
) -> None:
    base = lamina_server.url
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="flaky", url=f"{base}/flaky/rec?fail=2", retry_delay=0.01),
            APIEndpoint(name="plain", url=f"{base}/json?step=plain"),
        ],
        mode=OrchestrationMode.PARALLEL,
        cache_ttl=60,
    )
    runner = FlowRunner(config)  # the two runs share one orchestrator (and its cache)
    first = await runner.run(None)
    segments = first.recorder.timelines["flaky"].segments
    assert [s.kind for s in segments] == [
        "attempt",
        "retry-wait",
        "attempt",
        "retry-wait",
        "attempt",
    ]
    assert [s.status for s in segments if s.kind == "attempt"] == [503, 503, 200]
    assert all(s.end >= s.start for s in segments)
    assert first.recorder.timelines["flaky"].state == "ok"
    second = await runner.run(None)
    await runner.aclose()
    assert second.report is not None
    assert second.recorder.timelines["flaky"].cache_hit
    assert second.recorder.timelines["flaky"].segments == []  # the cache answered
    assert len(first.recorder.timelines["flaky"].segments) == 5  # each run keeps its record
    table = results_table(second.report, second.recorder.timelines)
    assert "flaky     cached   200     0         0 ms     yes" in table
    assert lamina_server.hits("/flaky/rec") == 3


async def test_breaker_rejection_and_rate_limit_wait_are_recorded(
    lamina_server: LocalServer,
) -> None:
    base = lamina_server.url
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="down", url=f"{base}/status/503", retry_count=0),
            APIEndpoint(name="paced", url=f"{base}/json?step=paced", method="POST"),
        ],
        mode=OrchestrationMode.SEQUENTIAL,
        circuit_breaker_threshold=1,
        global_rate_limit=1,
        rate_limit_window=0.1,
    )
    async with FlowRunner(config) as runner:  # one orchestrator: its breaker and limiter
        await runner.run(None)
        second = await runner.run(None)
    assert second.report is not None
    down = second.recorder.timelines["down"]
    assert [m.kind for m in down.marks] == ["breaker.rejected"]
    assert down.segments[0].error == "CircuitOpenError"
    waits = [s for s in second.recorder.timelines["paced"].segments if s.kind == "ratelimit-wait"]
    assert len(waits) == 1
    assert waits[0].end > waits[0].start
    text = waterfall(second.report, second.recorder.timelines)
    assert "~" in next(line for line in text.splitlines() if line.startswith("paced"))
    assert lamina_server.hits("/status/503") == 1  # the breaker kept the second call away


def test_live_display_redraws_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    display = LiveDisplay(["auth", "user"], stream)
    display.start()
    display.update("auth", "running", 0.01)
    display.update("auth", "ok", 0.05)
    display.finish()
    text = stream.getvalue()
    assert "\x1b[2F" in text  # cursor up over the two lines, then redraw
    assert text.rstrip().endswith("user  waiting")
    assert "+ auth  ok" in text
    lines = io.StringIO()
    plain = LiveDisplay(["auth"], lines)
    plain.start()
    plain.update("auth", "retrying", 0.2, "attempt 2 in 50 ms, 503")
    assert "\x1b" not in lines.getvalue()
    assert "auth: retrying (attempt 2 in 50 ms, 503)" in lines.getvalue()


def test_graph_views_for_in_order_and_dag_modes() -> None:
    def ep(name: str, *deps: str) -> APIEndpoint:
        return APIEndpoint(name=name, url="http://127.0.0.1:1/x", depends_on=list(deps) or None)

    pipeline = APIOrchestrationConfig(
        endpoints=[ep("a"), ep("b"), ep("c", "a")], mode=OrchestrationMode.PIPELINE
    )
    mermaid = graph_mermaid(pipeline)
    assert "    n0 -.-> n1" in mermaid  # config order, dashed
    assert "    n1 -.-> n2" in mermaid
    assert "    n0 --> n2" in mermaid  # the declared dependency
    assert "one call at a time" in graph_text(pipeline)
    dag = APIOrchestrationConfig(
        endpoints=[ep("a"), ep("b"), ep("c", "a", "b")], mode=OrchestrationMode.HYBRID
    )
    text = graph_text(dag)
    assert "step 1: a, b" in text
    assert "step 2: c" in text
    assert "-.->" not in graph_mermaid(dag)
