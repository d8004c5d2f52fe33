"""A missing extra fails early and plainly (issue 14, item 12): the packages are installed
here, so each check runs in a fresh interpreter where the module cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCK = """
import sys

class _Blocker:
    def __init__(self, *names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.names):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Blocker(*BLOCKED))
"""


def _python(code: str, *blocked: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = f"BLOCKED = {blocked!r}\n{BLOCK}\n{textwrap.dedent(code)}"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_redis_backend_without_redis_is_a_config_error_at_construction() -> None:
    done = _python(
        """
        from lamina import APIEndpoint, APIOrchestrationConfig, ConfigError
        from lamina.backends import RedisBackend
        endpoints = [APIEndpoint(name="a", url="http://127.0.0.1:9/")]
        try:
            APIOrchestrationConfig(endpoints=endpoints, backend="redis://:pw1234@127.0.0.1:6379/0")
        except ConfigError as exc:
            assert isinstance(exc, ImportError), type(exc)
            print("config", exc.field, exc)
        try:
            RedisBackend("redis://127.0.0.1:6379/0")
        except ConfigError as exc:
            print("backend", exc.field, exc)
        """,
        "redis",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("config backend ")
    assert "pip install 'lamina[redis]'" in lines[0]
    assert "pw1234" not in done.stdout
    assert lines[1].startswith("backend url ")
    assert "lamina[redis]" in lines[1]
    assert "Traceback" not in done.stderr


def test_flow_with_a_redis_backend_without_redis_exits_2_with_one_line(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "backend: redis://127.0.0.1:6379/0\nendpoints:\n  - name: a\n    url: http://127.0.0.1:9/\n"
    )
    done = _python(
        f"""
        from lamina.cli import main
        raise SystemExit(main(["validate", {str(flow)!r}]))
        """,
        "redis",
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "lamina[redis]" in done.stderr


def test_otlp_endpoint_without_otel_exits_2_with_one_line(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("endpoints:\n  - name: a\n    url: http://127.0.0.1:9/\n    retry_count: 0\n")
    done = _python(
        f"""
        from lamina.cli import main
        raise SystemExit(main(["run", {str(flow)!r}, "-q", "--otlp-endpoint", "http://127.0.0.1:9"]))
        """,
        "opentelemetry.sdk",
        "opentelemetry.exporter",
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "pip install 'lamina[otel]'" in done.stderr
    assert done.stdout == ""  # nothing ran


def test_telemetry_configure_without_otel_is_a_config_error() -> None:
    done = _python(
        """
        from lamina import ConfigError
        from lamina.telemetry import configure
        try:
            configure(otlp_endpoint="http://127.0.0.1:9")
        except ConfigError as exc:
            assert isinstance(exc, ImportError)
            print(exc)
        """,
        "opentelemetry.sdk",
        "opentelemetry.exporter",
    )
    assert done.returncode == 0, done.stderr
    assert "lamina[otel]" in done.stdout


def test_an_installed_extra_that_fails_to_import_shows_the_real_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An extra that is there but broken (an ImportError inside it, a dependency of its
    own missing) is not called missing: the message quotes the real error, chained."""
    from lamina import MissingExtra
    from lamina._extras import require

    (tmp_path / "broken_extra_pkg").mkdir()
    (tmp_path / "broken_extra_pkg" / "__init__.py").write_text("from os import no_such_name\n")
    (tmp_path / "needs_dep_pkg").mkdir()
    (tmp_path / "needs_dep_pkg" / "__init__.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtra) as caught:
        require(("broken_extra_pkg",), "redis", "a Redis backend", field="backend")
    message = str(caught.value)
    assert "cannot import name 'no_such_name'" in message
    assert "no module named 'os'" not in message.lower()
    assert "broken_extra_pkg" in message
    assert isinstance(caught.value.__cause__, ImportError)
    with pytest.raises(MissingExtra) as caught:
        require(("needs_dep_pkg",), "redis", "a Redis backend", field="backend")
    assert "no_such_dependency_xyz" in str(caught.value)
    assert "needs_dep_pkg" in str(caught.value)
    with pytest.raises(MissingExtra) as caught:  # really missing: as before
        require(("not_installed_pkg_xyz.sub",), "redis", "a Redis backend")
    assert "pip install 'lamina[redis]'" in str(caught.value)
    assert "no module named 'not_installed_pkg_xyz" in str(caught.value)


def test_a_broken_transport_extra_shows_the_real_error() -> None:
    """transport='aiohttp' with aiohttp installed but failing to import: the real error,
    not 'needs: pip install' (and a missing one is a MissingExtra naming the extra)."""
    script = """
import sys

class _Broken:
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp" or name.startswith("aiohttp."):
            raise ImportError("cannot import name 'helpers' from partially initialized module")
        return None

sys.meta_path.insert(0, _Broken())
from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, MissingExtra
config = APIOrchestrationConfig(endpoints=[APIEndpoint(name="a", url="http://127.0.0.1:9/")])
try:
    APIOrchestrator(config, transport="aiohttp")
except MissingExtra as exc:
    print(exc.field, exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("transport "), done.stdout
    assert "cannot import name 'helpers'" in done.stdout
    missing = _python(
        """
        from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, MissingExtra
        config = APIOrchestrationConfig(endpoints=[APIEndpoint(name="a", url="http://127.0.0.1:9/")])
        try:
            APIOrchestrator(config, transport="aiohttp")
        except MissingExtra as exc:
            print(exc.field, exc)
        """,
        "aiohttp",
    )
    assert missing.returncode == 0, missing.stderr
    assert "pip install 'lamina[aiohttp]'" in missing.stdout
