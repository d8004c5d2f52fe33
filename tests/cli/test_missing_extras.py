"""A missing extra fails early and plainly (issue 14, item 12): the packages are installed
here, so each check runs in a fresh interpreter where the module cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
