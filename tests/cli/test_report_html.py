"""The HTML run report: self-contained, secret-free, drawn by its script in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, OrchestrationMode
from lamina.cli.commands import run_flow
from lamina.cli.report_html import page_data, render_html
from lamina.testing import LocalServer

from .conftest import ROOT, Cli

ARTIFACTS = ROOT / "test-artifacts"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required under CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def browse(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_page_is_self_contained_and_secret_free(lamina_server: LocalServer) -> None:
    base = lamina_server.url
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="auth",
                url=f"{base}/json?token=abc123secret&step=a",
                headers={"Authorization": "Bearer s3cr3t-bearer"},
            ),
            APIEndpoint(name="posts", url=f"{base}/status/503", retry_count=0, depends_on=["auth"]),
        ],
        mode=OrchestrationMode.HYBRID,
    )
    outcome = await run_flow(config, None)
    assert outcome.report is not None
    page = render_html(
        outcome.report, config, outcome.recorder.timelines, secrets=["payload-only-secret"]
    )
    assert "s3cr3t-bearer" not in page
    assert "abc123secret" not in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # no network assets
    assert "<svg" in page
    assert page.count('class="edge"') == 1  # auth -> posts
    data = page_data(page)
    assert "value" not in data  # results stay out of the page
    assert [e["outcome"] for e in data["endpoints"]] == ["ok", "failed"]
    assert data["endpoints"][0]["url"].startswith(f"{base}/json?token=")
    assert '<tr class="outcome-failed">' in page


def test_report_renders_in_headless_chromium(
    cli: Cli, write_flow: Callable[..., Path], lamina_server: LocalServer, tmp_path: Path
) -> None:
    exe = chromium()
    base = lamina_server.url
    flow = write_flow(
        f"""
name: report demo
mode: hybrid
endpoints:
  - name: auth
    url: {base}/json?ms=40&step=auth
  - name: user
    url: {base}/json?ms=80&step=user
    depends_on: [auth]
  - name: flaky
    url: {base}/flaky/report?fail=2
    retry_delay: 0.03
    depends_on: [auth]
  - name: down
    url: {base}/status/503
    retry_count: 1
    retry_delay: 0.02
    depends_on: [user]
  - name: gated
    url: {base}/json
    condition: "`false`"
"""
    )
    report = tmp_path / "run.html"
    done = cli("run", str(flow), "--report", str(report), "-q")
    assert done.returncode == 1  # "down" failed
    assert f"report written to {report}" in done.stderr
    dom = browse(exe, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    drawn = re.search(r'id="waterfall" data-drawn="(\d+)"', html)
    assert drawn is not None, "the page's script did not run"
    # 4 call bars; attempts and waits: flaky 3+2, down 2+1 (auth and user: no child rows)
    assert int(drawn.group(1)) == 4 + 5 + 3
    assert html.count('class="bar call outcome-ok"') == 3
    assert html.count('class="bar call outcome-failed"') == 1
    assert html.count('class="bar retry-wait"') == 3
    assert html.count('class="bar attempt error"') == 4
    assert "skipped: condition is false" in html
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "run-report.png"
    shot.unlink(missing_ok=True)
    done = browse(
        exe,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,800",
        report.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    shutil.copy(report, ARTIFACTS / "run-report.html")


def test_unwritable_report_path_fails_before_any_call(
    cli: Cli, write_flow: Callable[..., Path], lamina_server: LocalServer, tmp_path: Path
) -> None:
    """Before: every call was made, then write_html died with a traceback."""
    flow = write_flow(
        f"""
endpoints:
  - name: a
    url: {lamina_server.url}/json
  - name: b
    url: {lamina_server.url}/json?step=b
"""
    )
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x", encoding="utf-8")
    bad = {
        str(tmp_path / "missing" / "run.html"): "No such file or directory",
        str(tmp_path): "Is a directory",
        str(a_file / "run.html"): "Not a directory",
        "/sys/lamina-run.html": "Permission denied",  # refused even to root
    }
    for path, reason in bad.items():
        done = cli("run", str(flow), "--report", path, "-q")
        assert done.returncode == 2, (path, done.stderr)
        assert done.stderr == f"lamina run: error: --report: cannot write {path}: {reason}\n"
        assert done.stdout == ""
        assert lamina_server.hits() == 0, path
    assert a_file.read_text(encoding="utf-8") == "x"
    done = cli("demo", "--report", str(tmp_path / "missing" / "demo.html"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "cannot write" in done.stderr
    # a writable path: the check leaves nothing behind, the run writes the report
    good = tmp_path / "run.html"
    done = cli("run", str(flow), "--report", str(good), "-q")
    assert done.returncode == 0, done.stderr
    assert lamina_server.hits() == 2
    assert good.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
