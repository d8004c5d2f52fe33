"""Layer plugins: the registry, the example package installed for real, broken plugins."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from lamina import ConfigError, HttpxTransport, Layer, Request, ServiceBuilder, plugins
from lamina.cli.commands import cmd_layers, layer_rows
from lamina.flows import build_orchestrator, config_from_dict, load_flow
from lamina.layers import ConcurrencyLimitLayer, RetryLayer
from lamina.plugins import (
    BUILTIN_LAYERS,
    GROUP,
    LayerNameClash,
    available_layers,
    clashing_plugins,
    get_layer,
    make_layer,
)
from lamina.testing import LocalServer

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"


def header(request_headers: dict[str, str], name: str) -> str | None:
    return {k.lower(): v for k, v in request_headers.items()}.get(name.lower())


# -- built-ins ------------------------------------------------------------------------------


def test_builtins_are_registered_and_load() -> None:
    layers = available_layers()
    assert list(layers)[: len(BUILTIN_LAYERS)] == list(BUILTIN_LAYERS)
    for name in BUILTIN_LAYERS:
        plugin = layers[name]
        assert plugin.builtin
        factory = plugin.load()
        assert inspect.isclass(factory)
        assert callable(factory.wrap)
    assert "seconds: float | None" in layers["timeout"].options()


def test_lamina_metadata_agrees_with_the_fallback_table() -> None:
    # Once pyproject declares the built-ins, the metadata and the table must match.
    for ep in entry_points(group=GROUP):
        if ep.dist is not None and ep.dist.name == "lamina":
            assert BUILTIN_LAYERS.get(ep.name) == ep.value, ep.name


def test_make_layer_and_unknown_names() -> None:
    layer = make_layer("concurrency", max_concurrent=2)
    assert isinstance(layer, ConcurrencyLimitLayer)
    with pytest.raises(ConfigError, match="did you mean 'concurrency'"):
        get_layer("concurency")
    with pytest.raises(ConfigError, match="must be"):
        make_layer("concurrency", max_concurrent=0)
    with pytest.raises(ConfigError, match="bad options for layer 'timeout'"):
        make_layer("timeout", secs=1)


# -- the example plugin, installed with pip ---------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plugin built and installed by pip into a private target directory."""
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
    command += [str(target)]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")  # offline and fast when the backend is here
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [*command, str(PLUGIN)], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr
    assert (target / "lamina_request_id").is_dir()
    return target


@pytest.fixture
def plugin_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(installed))
    return installed


def test_plugin_is_listed_with_its_package(plugin_path: Path) -> None:
    plugin = available_layers()["request_id"]
    assert not plugin.builtin
    assert plugin.package == "lamina-request-id 0.1.0"
    assert plugin.value == "lamina_request_id:RequestIdLayer"
    assert "header: str = 'X-Request-ID'" in plugin.options()


async def test_plugin_from_python(plugin_path: Path, lamina_server: LocalServer) -> None:
    ids = iter(["one", "two", "three"])
    per_call = make_layer("request_id", prefix="call-", generator=lambda: next(ids))
    assert isinstance(per_call, Layer)
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(per_call)
            .layer(RetryLayer(retries=2, backoff=0))
            .service(transport)
        )
        response = await service(Request("GET", lamina_server.url_for("/flaky/rid?fail=2")))
    assert response.status_code == 200
    seen = [header(r.headers, "X-Request-ID") for r in lamina_server.requests("/flaky/rid")]
    assert seen == ["call-one", "call-one", "call-one"]  # one id per call, kept by retries


async def test_plugin_per_attempt(plugin_path: Path, lamina_server: LocalServer) -> None:
    layer = make_layer("request_id", header="X-Attempt-ID", per_attempt=True)
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(RetryLayer(retries=1, backoff=0)).layer(layer)
        await service.service(transport)(Request("GET", lamina_server.url_for("/flaky/pa?fail=1")))
    seen = [header(r.headers, "X-Attempt-ID") for r in lamina_server.requests("/flaky/pa")]
    assert len(seen) == 2
    assert seen[0] != seen[1]
    assert all(s and len(s) == 32 for s in seen)


async def test_plugin_from_a_flow_file(
    plugin_path: Path, lamina_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMINA_BASE_URL", lamina_server.url)
    config = load_flow(ROOT / "examples" / "flows" / "request_id.yaml")
    async with build_orchestrator(config) as orchestrator:
        report = await orchestrator.run()
        stack = [type(layer).__name__ for layer in orchestrator._layers["echo"]]
    assert stack[0] == "RequestIdLayer"
    assert stack[1:] == [type(x).__name__ for x in orchestrator.default_layers(
        config.endpoints[0], config)]  # fmt: skip
    correlation = header(report.value["echo"], "X-Correlation-ID")
    assert correlation is not None
    assert correlation.startswith("flow-")
    (sent,) = lamina_server.requests("/echo")
    assert header(sent.headers, "X-Correlation-ID") == correlation


def test_plugin_options_are_validated_at_load(plugin_path: Path) -> None:
    data = {
        "endpoints": [{"name": "a", "url": "http://x.test/a"}],
        "layers": [{"request_id": {"hedaer": "X-Id"}}],
    }
    with pytest.raises(ConfigError, match="did you mean 'header'") as err:
        config_from_dict(data)
    assert err.value.field == "layers[0].options.hedaer"
    data["layers"] = [{"request_id": {"header": "bad header"}}]
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == "layers[0].options.header"


# -- broken plugins ---------------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake installed package declaring three bad plugins and one good one."""
    (tmp_path / "lamina_fake_plugins.py").write_text(
        textwrap.dedent(
            """\
            class NotALayer:
                def __init__(self, **options):
                    self.options = options

            def make_nothing(**options):
                return 42

            class Fine:
                def wrap(self, inner):
                    return inner
            """
        )
    )
    info = tmp_path / "lamina_broken_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lamina-broken-plugins\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[lamina.layers]\n"
        "missing = lamina_no_such_module_xyz:Layer\n"
        "not_a_layer = lamina_fake_plugins:NotALayer\n"
        "returns_int = lamina_fake_plugins:make_nothing\n"
        "fine = lamina_fake_plugins:Fine\n"
        "timeout = lamina_fake_plugins:Fine\n"  # may not replace a built-in
        "retry = lamina_fake_plugins:Fine\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lamina_fake_plugins", raising=False)
    return tmp_path


def test_broken_plugins_name_themselves_and_the_rest_work(
    broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugins, "_warned", set())
    with pytest.warns(LayerNameClash):
        layers = available_layers()
    assert {"missing", "not_a_layer", "returns_int", "fine"} <= set(layers)
    assert layers["timeout"].builtin  # the clash is ignored

    with pytest.raises(ConfigError) as err:
        layers["missing"].load()
    text = str(err.value)
    assert "'missing'" in text
    assert "lamina-broken-plugins 1.0" in text
    assert "ModuleNotFoundError" in text

    with pytest.raises(ConfigError, match="does not satisfy the Layer protocol") as err:
        layers["not_a_layer"].load()
    assert "lamina-broken-plugins 1.0" in str(err.value)
    assert "no wrap(inner) method" in str(err.value)

    with pytest.raises(ConfigError, match="returned int, which has no wrap"):
        make_layer("returns_int")

    assert make_layer("fine").wrap is not None
    assert isinstance(make_layer("timeout", seconds=1.0), Layer)


@pytest.mark.filterwarnings("ignore::lamina.plugins.LayerNameClash")
def test_a_flow_naming_a_broken_plugin_fails_at_load(broken: Path) -> None:
    data = {
        "endpoints": [{"name": "a", "url": "http://x.test/a"}],
        "layers": ["fine", "missing"],
    }
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == "layers[1].name"
    assert "lamina-broken-plugins 1.0" in str(err.value)
    data["layers"] = [{"returns_int": {}}]
    with pytest.raises(ConfigError, match="does not satisfy the Layer protocol") as err:
        config_from_dict(data)
    data["layers"] = ["fine", "defaults"]
    assert config_from_dict(data).endpoints[0].name == "a"


def test_a_plugin_taking_a_builtin_name_is_warned_about_and_listed(
    broken: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plugins, "_warned", set())
    with pytest.warns(LayerNameClash) as caught:
        layers = available_layers()
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert (
        "'retry' (lamina_fake_plugins:Fine) from package lamina-broken-plugins 1.0" in (messages[0])
    )
    assert "built-in 'retry' layer and is ignored" in messages[0]
    assert layers["retry"].builtin  # the built-in still wins
    assert layers["retry"].value == BUILTIN_LAYERS["retry"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        available_layers()  # once per entry and process: no second warning

    assert [(p.name, p.package) for p in clashing_plugins()] == [
        ("retry", "lamina-broken-plugins 1.0"),
        ("timeout", "lamina-broken-plugins 1.0"),
    ]
    rows = {(r["name"], r["builtin"]): r for r in layer_rows()}
    assert "is ignored" in rows[("retry", False)]["error"]
    assert rows[("retry", True)]["error"] is None

    assert cmd_layers(argparse.Namespace(json=False)) == 0
    out, err = capsys.readouterr()
    plugin_part = out.split("plugin layers:")[1]
    assert "retry  (lamina_fake_plugins:Fine)  [lamina-broken-plugins 1.0]" in plugin_part
    assert "declares the name of lamina's built-in 'retry' layer" in plugin_part
    assert "retry" in err.splitlines()[-1]


def test_lamina_own_registration_is_not_a_clash() -> None:
    assert clashing_plugins() == []  # lamina's metadata declares every built-in


def test_an_unknown_layer_name_suggests_only_a_close_one() -> None:
    from lamina import ConfigError
    from lamina.plugins import get_layer

    with pytest.raises(ConfigError, match="did you mean 'retry'"):
        get_layer("retyr")
    with pytest.raises(ConfigError) as caught:
        get_layer("ghost")
    assert "did you mean" not in str(caught.value)  # 'chaos' is not what was meant
