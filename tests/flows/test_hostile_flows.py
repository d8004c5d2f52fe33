"""Hostile flow files end in ConfigError quickly, and a flow's import references are code
that runs only when the caller allows it (docs/security.md, "Flows are data, not code")."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina import ConfigError
from lamina.flows import config_from_dict, config_to_dict, flow_info, load_flow, parse_flow_text
from lamina.flows.imports import ImportedHook, ImportPolicy, PendingImport
from lamina.flows.limits import (
    MAX_FLOW_BYTES,
    MAX_FLOW_DEPTH,
    MAX_FLOW_VALUES,
    check_depth_text,
    check_shape,
)

DEEP = 50_000
BUDGET = 2.0  # CPU seconds: a generous upper bound, not a benchmark
ENDPOINT = "{name: a, url: 'http://127.0.0.1:9/a'}"


@pytest.fixture
def clock() -> Callable[[], float]:
    """CPU seconds of this process since the test began: what a hostile flow costs us,
    whatever else the machine is running (wall time fails on a loaded machine)."""
    start = time.process_time()
    return lambda: time.process_time() - start


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def load_fails(path: Path, clock: Callable[[], float], **kwargs: Any) -> ConfigError:
    before = clock()
    with pytest.raises(ConfigError) as err:
        load_flow(path, **kwargs)
    assert clock() - before < BUDGET
    return err.value


# -- nesting -------------------------------------------------------------------------------

DEEP_FILES = {
    "flow-brackets.yaml": "endpoints: " + "[" * DEEP + "]" * DEEP + "\n",
    "block-dashes.yaml": "endpoints:\n  " + "- " * DEEP + "x\n",
    "flow-mappings.yaml": "endpoints: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n",
    "unclosed.yaml": "endpoints: " + "[" * DEEP,
    "deep.json": '{"endpoints": ' + "[" * DEEP + "]" * DEEP + "}",
    "deep.toml": "endpoints = " + "[" * DEEP + "]" * DEEP + "\n",
    "inline-tables.toml": "endpoints = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n",
    "dotted-keys.toml": "[body]\n" + ".".join(f"k{i}" for i in range(5000)) + " = 1\n",
}


@pytest.mark.parametrize("name", sorted(DEEP_FILES))
def test_deep_nesting_is_a_config_error(
    tmp_path: Path, clock: Callable[[], float], name: str
) -> None:
    error = load_fails(write(tmp_path, name, DEEP_FILES[name]), clock)
    assert f"nesting deeper than {MAX_FLOW_DEPTH} levels" in error.message
    assert name in error.message


def nested(fmt: str, levels: int) -> str:
    """A flow whose ``body`` makes the whole document ``levels`` deep (top mapping = 1)."""
    inner = levels - 3  # top mapping, the endpoints list, the endpoint mapping
    if fmt == "json":
        body = "[" * inner + "]" * inner
        return '{"endpoints": [{"name": "a", "url": "http://127.0.0.1:9/a", "body": ' + body + "}]}"
    if fmt == "toml":
        body = "[" * inner + "]" * inner
        return f'[[endpoints]]\nname = "a"\nurl = "http://127.0.0.1:9/a"\nbody = {body}\n'
    body = "[" * inner + "]" * inner
    return f"endpoints: [{{name: a, url: 'http://127.0.0.1:9/a', body: {body}}}]\n"


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_the_depth_limit_is_exact(tmp_path: Path, fmt: str) -> None:
    config = load_flow(write(tmp_path, f"ok.{fmt}", nested(fmt, MAX_FLOW_DEPTH)))
    assert config.endpoints[0].body is not None
    with pytest.raises(ConfigError, match="nesting deeper than"):
        load_flow(write(tmp_path, f"deep.{fmt}", nested(fmt, MAX_FLOW_DEPTH + 1)))


# -- the scan that skips strings is linear (issue 12 review, item 9) ------------------------

HALF = MAX_FLOW_BYTES // 2 - 64  # escaped quotes, two bytes each, filling the cap
ESCAPED_QUOTE_FLOODS = {
    "outside.json": '{"a": 1, "b": ' + '\\"' * HALF + "}",
    "inside.json": '{"a": "' + '\\"' * HALF + '"}',
    "unterminated.json": '{"a": "' + '\\"' * HALF,
    "outside.toml": "a = " + '\\"' * HALF,
    "inside.toml": 'a = "' + '\\"' * HALF + '"',
    "lines.toml": ('a = "' + '\\"' * 20 + "\n") * (MAX_FLOW_BYTES // 46),
    "multiline.toml": 'a = """' + '\\"""' * (MAX_FLOW_BYTES // 4 - 4),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(ESCAPED_QUOTE_FLOODS))
def test_escaped_quote_floods_end_within_the_budget(
    tmp_path: Path, clock: Callable[[], float], name: str
) -> None:
    """The regular expressions that skipped strings backtracked: 60 KB of escaped quotes
    in JSON took 7 to 16 s, a 40 KB TOML line 3 to 4 s, and 512 KiB would take minutes."""
    path = write(tmp_path, name, ESCAPED_QUOTE_FLOODS[name])
    assert MAX_FLOW_BYTES - 1024 < path.stat().st_size <= MAX_FLOW_BYTES
    load_fails(path, clock)


NESTED = "[" * (MAX_FLOW_DEPTH + 1) + "]" * (MAX_FLOW_DEPTH + 1)


@pytest.mark.parametrize(
    ("fmt", "text", "deep"),
    [
        # brackets and commas inside strings and comments do not count
        ("json", '{"a": "[[[{{{,,,", "b": "\\\\", "c": "\\"[["}', False),
        ("toml", 'a = "[[[{{{,,," # [[[[[[\nb = \'C:\\[[\'\nc = """[[""[["""', False),
        ("toml", "a = '''[[''[['''\nb = 1 # \"a quote in a comment [[[\n", False),
        # a string that ends in an escaped backslash closes there; nesting after it counts
        ("json", '{"a": "\\\\", "b": ' + NESTED + "}", True),
        ("toml", 'a = "\\\\"\nb = ' + NESTED, True),
        ("toml", "a = 'C:\\'\nb = " + NESTED, True),  # no escapes in a literal string
        ("toml", 'a = """x""""\nb = ' + NESTED, True),  # a quote just before the closing
        ("toml", 'a = "never closes [[\nb = ' + NESTED, True),  # the next line still counts
    ],
)
def test_the_string_scan_follows_each_format(fmt: str, text: str, deep: bool) -> None:
    if deep:
        with pytest.raises(ConfigError, match="nesting deeper than"):
            check_depth_text(text, fmt, "f")
    else:
        check_depth_text(text, fmt, "f")
        parse_flow_text(text, fmt)  # and the parser agrees the file is well formed


def test_deep_python_data_is_a_config_error_not_recursion() -> None:
    body: Any = []
    for _ in range(DEEP):
        body = [body]
    data = {"endpoints": [{"name": "a", "url": "http://127.0.0.1:9/a", "body": body}]}
    with pytest.raises(ConfigError, match="nesting deeper than 64 levels"):
        config_from_dict(data)


def test_self_containing_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "cycle.yaml", f"endpoints: &e [{ENDPOINT[:-1]}, body: *e}}]\n")
    with pytest.raises(ConfigError, match="a value contains itself"):
        load_flow(path)


def test_check_shape_measures_shared_parts_once() -> None:
    leaf: Any = [1, 2]
    for _ in range(40):  # 2**40 paths, 40 distinct lists
        leaf = [leaf, leaf]
    check_shape({"x": leaf})
    for _ in range(30):
        leaf = [leaf, leaf]
    with pytest.raises(ConfigError, match="nesting deeper"):
        check_shape({"x": leaf})


# -- size and values -----------------------------------------------------------------------


def test_a_file_over_the_cap_is_refused_before_reading(
    tmp_path: Path, clock: Callable[[], float]
) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:  # 50 MB, sparse: refused on its size alone
        stream.truncate(50 * 1024 * 1024)
    error = load_fails(path, clock)
    assert error.message == (
        f"huge.yaml: {50 * 1024 * 1024} bytes is more than a flow may hold ({MAX_FLOW_BYTES} bytes)"
    )


def test_text_over_the_cap_is_refused() -> None:
    with pytest.raises(ConfigError, match="more than a flow may hold"):
        parse_flow_text("#" * (MAX_FLOW_BYTES + 1), "yaml")
    with pytest.raises(ConfigError, match="more than a flow may hold"):
        parse_flow_text("é" * (MAX_FLOW_BYTES // 2 + 1), "yaml")  # 2 bytes each


def flat(fmt: str, count: int) -> str:
    values = ",".join(["1"] * count)
    if fmt == "json":
        return '{"endpoints": [' + values + "]}"
    if fmt == "toml":
        return f"endpoints = [{values}]\n"
    return f"endpoints: [{values}]\n"


def bomb_alias() -> str:
    text = "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
    for k in range(1, 10):
        prev, cur = chr(ord("a") + k - 1), chr(ord("a") + k)
        text += f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 10) + "]\n"
    return text


def bomb_merge() -> str:
    keys = ",".join(f"k{i}: 1" for i in range(1000))
    return "a: &a {" + keys + "}\nb: {<<: [" + ",".join(["*a"] * 20_000) + "]}\n"


VALUE_BOMBS = {
    "flat.yaml": flat("yaml", MAX_FLOW_VALUES + 10),
    "flat.json": flat("json", MAX_FLOW_VALUES + 10),
    "flat.toml": flat("toml", MAX_FLOW_VALUES + 10),
    "laughs.yaml": bomb_alias(),
    "merge-keys.yaml": bomb_merge(),
}


@pytest.mark.parametrize("name", sorted(VALUE_BOMBS))
def test_too_many_values_is_a_config_error(
    tmp_path: Path, clock: Callable[[], float], name: str
) -> None:
    error = load_fails(write(tmp_path, name, VALUE_BOMBS[name]), clock)
    assert f"more than {MAX_FLOW_VALUES} values" in error.message


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_an_integer_too_long_to_read_is_a_config_error(tmp_path: Path, fmt: str) -> None:
    digits = "9" * 5000
    text = {
        "yaml": f"endpoints: [{{name: a, url: 'http://x.test/', timeout: {digits}}}]",
        "json": '{"endpoints": [{"name": "a", "url": "http://x.test/", "timeout": '
        + digits
        + "}]}",
        "toml": f'[[endpoints]]\nname = "a"\nurl = "http://x.test/"\ntimeout = {digits}\n',
    }[fmt]
    with pytest.raises(ConfigError, match="Exceeds the limit"):
        load_flow(write(tmp_path, f"int.{fmt}", text))


def test_a_large_ordinary_flow_still_loads_within_the_budget(
    tmp_path: Path, clock: Callable[[], float]
) -> None:
    entry = (
        "  - name: ep{i}\n    url: https://api.example.com/v1/users/{{user_id}}/items/{i}\n"
        "    headers:\n      Accept: application/json\n    timeout: 5\n"
        '    transform_output: "data.items[*].id"\n'
    )
    parts = ["mode: parallel\nendpoints:\n"]
    size, i = len(parts[0]), 0
    while size + 200 < MAX_FLOW_BYTES:
        parts.append(entry.format(i=i))
        size += len(parts[-1])
        i += 1
    path = write(tmp_path, "big.yaml", "".join(parts))
    before = clock()
    config = load_flow(path)
    assert clock() - before < BUDGET
    assert len(config.endpoints) == i > 2000


@pytest.mark.parametrize(
    ("layer", "options", "field"),
    [
        ("cache", {"ttl": 1e308}, "ttl"),
        ("circuit_breaker", {"timeout": 1e308}, "timeout"),
        ("rate_limit", {"rate": 10, "period": 1e-320}, "period"),
    ],
)
def test_numbers_in_layer_options_are_bounded(
    layer: str, options: dict[str, Any], field: str
) -> None:
    data = {"endpoints": [{"name": "a", "url": "http://x.test/"}], "layers": [{layer: options}]}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == f"layers[0].options.{field}"
    assert "30 days" in err.value.message


# -- encoding ------------------------------------------------------------------------------


def test_bytes_that_are_not_utf8_name_the_file_and_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.yaml", b"name: ok\n" + "caf\xe9: 1\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_flow(path)
    assert err.value.message == (
        "latin1.yaml: not UTF-8 text: byte 0xe9 at offset 12 (line 2); save the file as UTF-8"
    )
    assert err.value.field is None


# -- imports -------------------------------------------------------------------------------

EVAL_FLOW = """
name: evil
endpoints:
  - name: a
    url: http://127.0.0.1:9/a
    response_parser: "`\\"__import__('pathlib').Path(r'{marker}').touch()\\"`"
    transform_output: "builtins:eval"
"""


def test_builtins_eval_is_refused_even_when_imports_are_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "evil.yaml", EVAL_FLOW.format(marker=tmp_path / "ran"))
    for allow in (False, ["json", "mypkg"], ["builtinsx"]):
        with pytest.raises(ConfigError) as err:
            load_flow(path, allow_imports=allow)
        assert err.value.field == "endpoints[0].transform_output"
        assert "import of 'builtins:eval' refused" in err.value.message
        assert "(evil.yaml, line 7)" in err.value.message
    # only an allow-list that names builtins lets it through (not run here)
    config = load_flow(path, allow_imports=["builtins"])
    assert isinstance(config.endpoints[0].transform_output, ImportedHook)
    assert not (tmp_path / "ran").exists()


def test_refusal_says_how_to_opt_in() -> None:
    data = {"endpoints": [{"name": "a", "url": "http://x.test/", "condition": "json:loads"}]}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert str(err.value) == (
        "endpoints[0].condition: import of 'json:loads' refused: flows may not import code "
        "unless the caller allows it: load_flow(..., allow_imports=['json']) or "
        "`lamina run --allow-imports-from json` allows it"
    )


@pytest.fixture
def hooks_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package ``lamina_test_hooks_<n>`` on sys.path whose import touches a marker file."""
    name = f"lamina_test_hooks_{time.monotonic_ns()}"
    package = tmp_path / name
    package.mkdir()
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n", encoding="utf-8"
    )
    (package / "transforms.py").write_text(
        "import os\n"
        "import timeit\n"
        "from json import loads\n"
        "from subprocess import getoutput as run\n"
        "def shout(value):\n    return str(value).upper()\n"
        "class Shouter:\n    def shout(self, value):\n        return shout(value)\n"
        "shouter = Shouter()\n"
        "TABLE = {}\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def hook_flow(reference: str) -> dict[str, Any]:
    return {"endpoints": [{"name": "a", "url": "http://x.test/", "transform_output": reference}]}


def test_allow_list_by_prefix(hooks_package: str, tmp_path: Path) -> None:
    reference = f"{hooks_package}.transforms:shout"
    marker = tmp_path / "imported"
    for refused in (False, ["json"], [f"{hooks_package}x"], [f"{hooks_package}.other"]):
        with pytest.raises(ConfigError, match="refused"):
            config_from_dict(hook_flow(reference), allow_imports=refused)
        assert not marker.exists()
    allow_lists = ([hooks_package], [f"{hooks_package}.transforms"], f"json,{hooks_package}")
    for allowed in allow_lists:
        config = config_from_dict(hook_flow(reference), allow_imports=allowed)
        hook = config.endpoints[0].transform_output
        assert hook is not None
        assert hook("ok") == "OK"
    assert marker.exists()


@pytest.mark.parametrize(
    ("reference", "text"),
    [
        ("os:system", "'os' can run commands or code"),
        ("os.path:join", "'os' can run commands or code"),
        ("subprocess:getoutput", "'subprocess' can run commands or code"),
        ("importlib:import_module", "'importlib' can run commands or code"),
        ("{pkg}.transforms:os.system", "it reaches 'os'"),  # through an allowed module
        ("{pkg}.transforms:run", "it reaches 'subprocess'"),  # a re-exported function
        ("{pkg}.transforms:__builtins__", "may not name dunder attributes"),
        # the review's holes in the old denylist (allow_imports=True let each through)
        ("timeit:timeit", "'timeit' is not under the allowed prefixes"),
        ("yaml:unsafe_load", "'yaml' is not under the allowed prefixes"),
        ("linecache:getlines", "'linecache' is not under the allowed prefixes"),
        ("cProfile:run", "'cProfile' is not under the allowed prefixes"),
        ("profile:run", "'profile' is not under the allowed prefixes"),
        ("pydoc:pipepager", "'pydoc' is not under the allowed prefixes"),
        ("{pkg}.transforms:timeit.timeit", "it reaches 'timeit'"),
        ("{pkg}.transforms:loads", "it reaches 'json'"),  # anything not named, not just code
    ],
)
def test_allowed_imports_still_refuse_code_runners(
    hooks_package: str, reference: str, text: str
) -> None:
    reference = reference.format(pkg=hooks_package)
    with pytest.raises(ConfigError) as err:
        config_from_dict(hook_flow(reference), allow_imports=[hooks_package])
    assert err.value.field == "endpoints[0].transform_output"
    assert text in err.value.message


def test_what_a_reference_reaches_is_allowed_when_named(hooks_package: str) -> None:
    transforms = f"{hooks_package}.transforms"
    config = config_from_dict(hook_flow(f"{transforms}:loads"), allow_imports=[transforms, "json"])
    hook = config.endpoints[0].transform_output
    assert hook is not None
    assert hook("[1]") == [1]
    method = config_from_dict(hook_flow(f"{transforms}:shouter.shout"), allow_imports=[transforms])
    assert method.endpoints[0].transform_output("ok") == "OK"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="comes from no module"):
        config_from_dict(hook_flow(f"{transforms}:TABLE.get"), allow_imports=[transforms])


RCE_FLOWS = ["timeit:timeit", "yaml:unsafe_load", "linecache:getlines", "json:loads"]


@pytest.mark.parametrize("reference", RCE_FLOWS)
def test_allow_imports_true_is_refused(tmp_path: Path, reference: str) -> None:
    """Issue 12 review, item 8 (/tmp/rv/rce.py): ``True`` meant "any module but a
    denylist", and ``timeit:timeit`` ran code, ``yaml:unsafe_load`` built any object,
    ``linecache:getlines`` read any file. No denylist is complete: ``True`` is refused."""
    path = write(
        tmp_path,
        "f.yaml",
        f"endpoints:\n  - name: a\n    url: http://127.0.0.1:9/x\n"
        f'    transform_output: "{reference}"\n',
    )
    for resolve in (True, False):
        with pytest.raises(ConfigError) as err:
            load_flow(path, allow_imports=True, resolve_imports=resolve)
        assert err.value.field == "allow_imports"
        assert "name the modules a flow may import" in err.value.message
        assert "--allow-imports-from" in err.value.message
    module = reference.partition(":")[0]
    config = load_flow(path, allow_imports=[module])  # naming the module is the way
    assert isinstance(config.endpoints[0].transform_output, ImportedHook)


def test_resolve_imports_false_imports_nothing_and_lists_verdicts(
    hooks_package: str, tmp_path: Path
) -> None:
    data = hook_flow(f"{hooks_package}.transforms:shout")
    data["endpoints"][0]["condition"] = {"import": "builtins:eval"}
    data["layers"] = [{"retry": {"policy": {"import": f"{hooks_package}:Policy"}}}]
    config = config_from_dict(data, allow_imports=[hooks_package], resolve_imports=False)
    assert not (tmp_path / "imported").exists()
    hook = config.endpoints[0].transform_output
    assert isinstance(hook, PendingImport)
    with pytest.raises(ConfigError, match="was not imported"):
        hook("x")
    found = {(i.field, i.reference, i.allowed) for i in flow_info(config).imports}
    assert found == {
        ("endpoints[0].transform_output", f"{hooks_package}.transforms:shout", True),
        ("endpoints[0].condition.import", "builtins:eval", False),
        ("layers[0].options.policy.import", f"{hooks_package}:Policy", True),
    }
    assert config_to_dict(config)["endpoints"][0]["transform_output"] == (
        f"{hooks_package}.transforms:shout"
    )


def test_layer_option_imports_are_refused_unless_allowed() -> None:
    data = hook_flow("a.b")
    data["layers"] = [{"timeout": {"seconds": {"import": "math:pi"}}}]
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == "layers[0].options.seconds.import"
    config = config_from_dict(data, allow_imports=["math"])
    assert flow_info(config).layers[0].options == {"seconds": 3.141592653589793}  # type: ignore[index]


@pytest.mark.parametrize("value", [True, 42, ["ok", "no way"], ["a..b"], [""], object()])
def test_bad_allow_imports_values(value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        ImportPolicy.of(value)
    assert err.value.field == "allow_imports"
    with pytest.raises(ConfigError):
        ImportPolicy(("os;rm",))  # built directly, the same check
