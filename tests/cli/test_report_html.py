"""The HTML run report: self-contained, secret-free, drawn by its script in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, OrchestrationMode
from lamina.cli.commands import run_flow
from lamina.cli.report_html import CONTENT_SECURITY_POLICY, page_data, render_html, script_json
from lamina.testing import LocalServer, RecordedRequest

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
    dom = browse(
        exe, tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri()
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Content Security Policy" not in dom.stderr  # its own script and style are allowed
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


# -- hostile input: nothing a run reports is ever markup or script ----------------------


def hostile(tag: str, beacon: str, *, spaces: bool = True) -> list[str]:
    """Payloads that, if they ran, would set document.title, add a <pwned> element
    and load ``beacon/tag`` (a loopback URL the test server counts). Without
    ``spaces`` (for URLs) they use ``/`` between attributes and load nothing."""
    act = (
        f"document.title='PWNED-{tag}';"
        "document.body.appendChild(document.createElement('pwned'));"
        f"new Image().src='{beacon}/{tag}'"
    )
    if not spaces:
        act = act.rsplit(";", 1)[0]
    payloads = [
        f'<img src=x onerror="{act}">',
        f"</script><script>{act}</script>",
        f'"\'><svg onload="{act}">',
        f"<!--<script>{act}//",
        f'</title></text></svg><![CDATA[<img src=x onerror="{act}">]]>',
    ]
    return payloads if spaces else [p.replace(" ", "/") for p in payloads]


@dataclass
class HostileRun:
    page: str
    title: str
    names: list[str]
    payloads: list[str]


async def hostile_run(server: LocalServer) -> HostileRun:
    """A real run whose endpoint names, URLs, error messages, bodies and title are hostile."""
    beacon = server.url_for("/pwned")
    names = hostile("name", beacon)
    bodies = hostile("body", beacon)
    errors = hostile("error", beacon)
    urls = hostile("url", beacon, spaces=False)

    def body(request: RecordedRequest) -> tuple[int, str, dict[str, str]]:
        # says JSON, is not: a ParseError whose message quotes the start of the body
        return 200, bodies[int(request.query["i"])], {"Content-Type": "application/json"}

    server.route("/hostile/", body)

    def refuse(value: Any) -> Any:
        raise ValueError(f"{errors[0]} {errors[1]}")

    endpoints = [
        APIEndpoint(name=name, url=server.url_for(f"/hostile/x?i={i}&q={urls[i]}"))
        for i, name in enumerate(names)
    ]
    endpoints += [
        APIEndpoint(name=errors[2], url=server.url_for("/json"), transform_output=refuse),
        APIEndpoint(name=errors[3], url=server.url_for("/json"), depends_on=[names[0]]),
        APIEndpoint(
            name=errors[4], url=server.url_for("/status/503"), retry_count=1, retry_delay=0.01
        ),
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, mode=OrchestrationMode.HYBRID)
    outcome = await run_flow(config, None)
    report = outcome.report
    assert report is not None
    assert set(report.failed) >= {*names, errors[2], errors[4]}  # all in the page header
    assert report.endpoints[errors[3]].outcome == "skipped"
    title = hostile("title", beacon)[0]
    page = render_html(report, config, outcome.recorder.timelines, title=title)
    everything = [*names, *bodies, *errors, *urls, title]
    return HostileRun(page, title, [e.name for e in endpoints], everything)


SAFE_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "div", "span"),
    *("b", "i", "section", "noscript", "svg", "defs", "marker", "path", "g", "rect", "text"),
    *("table", "thead", "tbody", "tr", "th", "td", "script"),
}


class Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = f"{tag}#{dict(attrs).get('id', '')}"

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.blocks[self._open] = self.blocks.get(self._open, "") + data

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_hostile_values_are_only_text_in_the_page(lamina_server: LocalServer) -> None:
    run = await hostile_run(lamina_server)
    page = run.page
    for payload in run.payloads:
        assert payload not in page  # never written raw, anywhere
    markup = Markup()
    markup.feed(page)
    markup.close()
    tags = [tag for tag, _ in markup.tags]
    assert set(tags) <= SAFE_TAGS, set(tags) - SAFE_TAGS
    attrs = {name for _, found in markup.tags for name in found}
    assert not {a for a in attrs if a.startswith("on")}  # no event handler
    assert not attrs & {"src", "href", "style", "srcdoc", "action", "formaction"}
    scripts = [found for tag, found in markup.tags if tag == "script"]
    assert [s.get("type") for s in scripts] == ["application/json", "application/json", None]
    # the policy is in the page, and its hashes are those of the page's own script and style
    (meta,) = [f for t, f in markup.tags if t == "meta" and f.get("http-equiv")]
    assert meta["content"] == CONTENT_SECURITY_POLICY
    assert tags.index("meta") < tags.index("style")  # in force before anything it governs
    policy = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == sha256_source(markup.blocks["script#"])
    assert policy["style-src"] == sha256_source(markup.blocks["style#"])
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    # the data survives as data: JSON.parse gives back every hostile string
    data = page_data(page)
    assert [e["name"] for e in data["endpoints"]] == run.names
    assert any("</script>" in (e.get("error") or "") for e in data["endpoints"])


def test_script_json_cannot_leave_its_element() -> None:
    value = {"a</script><script>x": "<!--<script>", "b": "]]>\u2028\u2029&amp;"}
    text = script_json(value)
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == value


def browse_dom(exe: str, profile: Path, page: Path) -> tuple[str, str]:
    """The DOM after load (scripts run, images failed) and Chromium's console log."""
    done = browse(
        exe,
        profile,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
        "--dump-dom",
        page.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def text_of(value: str) -> str:
    """``value`` as Chromium serialises a text node."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def test_no_injected_script_runs_in_chromium(
    lamina_server: LocalServer, tmp_path: Path
) -> None:
    exe = chromium()
    run = await hostile_run(lamina_server)
    lamina_server.reset()
    meta = (
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CONTENT_SECURITY_POLICY)}">'
    )
    assert meta in run.page
    # a positive control: markup written raw, as the old header did with the names
    control = (
        "<img src=x onerror=\"document.title='CONTROL';"
        "document.body.appendChild(document.createElement('control-ran'));"
        f"new Image().src='{lamina_server.url_for('/pwned/control')}'\">"
    )
    as_written = tmp_path / "report.html"
    as_written.write_text(run.page, encoding="utf-8")
    no_policy = tmp_path / "no-policy.html"  # escaping alone, control proves detection works
    no_policy.write_text(
        run.page.replace(meta, "").replace("<body>", "<body>" + control), encoding="utf-8"
    )
    with_policy = tmp_path / "injected.html"  # the policy alone stops what escaping missed
    with_policy.write_text(run.page.replace("<body>", "<body>" + control), encoding="utf-8")

    def check_drawn(dom: str) -> None:
        drawn = re.search(r'id="waterfall" data-drawn="(\d+)"', dom)
        assert drawn is not None, "the page's script did not run"
        assert int(drawn.group(1)) > len(run.names)
        for name in run.names:  # drawn as text by the page's own script
            assert f">{text_of(name)}</div>" in dom

    dom, console = browse_dom(exe, tmp_path / "p1", as_written)
    check_drawn(dom)
    assert f"<title>{text_of(run.title)}</title>" in dom  # document.title untouched
    assert "<pwned>" not in dom
    assert "Content Security Policy" not in console  # nothing of ours blocked, nothing tried

    dom, console = browse_dom(exe, tmp_path / "p2", no_policy)
    check_drawn(dom)
    assert "<title>CONTROL</title>" in dom  # the control ran
    assert "<control-ran>" in dom
    assert "<pwned>" not in dom

    dom, console = browse_dom(exe, tmp_path / "p3", with_policy)
    check_drawn(dom)
    assert f"<title>{text_of(run.title)}</title>" in dom
    assert "<control-ran>" not in dom
    assert "Content Security Policy" in console  # the control was refused

    beacons = [r.path for r in lamina_server.requests() if r.path.startswith("/pwned")]
    assert beacons == ["/pwned/control"]  # only the control, only without the policy
