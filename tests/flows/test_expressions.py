"""Hooks written as JMESPath expressions or import references."""

from __future__ import annotations

from typing import Any

import pytest

from lamina import APIEndpoint, ConfigError, HTTPStatusError, Request, Response
from lamina.flows import Expression, hook_from_spec, hook_to_spec
from lamina.flows.expressions import ImportedHook, import_reference


def response(body: bytes, content_type: str = "application/json") -> Response:
    return Response(200, headers={"content-type": content_type}, content=body)


def test_select_and_reshape() -> None:
    hook = hook_from_spec("{id: user.id, tags: user.tags[?@ != 'x']}", "transform_output")
    assert hook({"user": {"id": 7, "tags": ["a", "x", "b"]}}) == {"id": 7, "tags": ["a", "b"]}


@pytest.mark.parametrize(
    ("expr", "context", "expected"),
    [
        ("amount > `100`", {"amount": 250}, True),
        ("amount > `100`", {"amount": 20}, False),
        ("user.active", {"user": {"active": False}}, False),
        ("user.roles", {"user": {"roles": []}}, False),  # empty is false in JMESPath
        ("user.roles", {"user": {"roles": ["admin"]}}, True),
        ("missing", {}, False),
        ("`0`", {}, True),  # numbers are true in JMESPath, even 0
        ("contains(tags, 'vip') && total >= `10`", {"tags": ["vip"], "total": 10}, True),
    ],
)
def test_conditions_return_bools(expr: str, context: dict[str, Any], expected: bool) -> None:
    condition = hook_from_spec(expr, "endpoints[0].condition")
    assert condition(context) is expected


def test_response_parser_gets_the_json_body_or_text() -> None:
    parser = hook_from_spec("data.items[0]", "response_parser")
    assert parser(response(b'{"data": {"items": ["first"]}}')) == "first"
    text = hook_from_spec("@", "response_parser")
    assert text(response(b"plain words", "text/plain")) == "plain words"
    assert text(response(b"")) is None


def test_error_handler_sees_a_summary_of_the_error() -> None:
    handler = hook_from_spec("{failed: type, status: status_code, at: endpoint}", "error_handler")
    request = Request("GET", "http://x.test/a", endpoint="a")
    error = HTTPStatusError.from_response(Response(503, request=request, content=b""))
    assert handler(error) == {"failed": "HTTPStatusError", "status": 503, "at": "a"}


def test_cache_key_generator_returns_strings() -> None:
    endpoint = APIEndpoint(name="a", url="http://x.test/a", params={"page": 2})
    assert hook_from_spec("name", "cache_key_generator")(endpoint) == "a"
    key = hook_from_spec("{n: name, p: params}", "cache_key_generator")(endpoint)
    assert key == '{"n": "a", "p": {"page": 2}}'


def test_result_merger_and_transformer() -> None:
    merger = hook_from_spec("[?@ != null] | length(@)", "result_merger")
    assert merger([{"a": 1}, None, {"b": 2}]) == 2
    assert hook_from_spec("sort(@)", "result_transformer")([3, 1, 2]) == [1, 2, 3]


def test_explicit_forms_and_spec_round_trip() -> None:
    expr = hook_from_spec({"jmespath": "a.b"}, "transform_output")
    assert isinstance(expr, Expression)
    assert hook_to_spec(expr, "transform_output") == "a.b"
    imported = hook_from_spec({"import": "json:loads"}, "response_parser", allow_imports=["json"])
    assert isinstance(imported, ImportedHook)
    assert hook_to_spec(imported, "response_parser") == "json:loads"
    assert repr(expr) == "Expression('a.b')"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a >", "invalid JMESPath expression"),
        ("", "must be a non-empty JMESPath expression"),
        (42, "must be an import reference or a JMESPath expression, got int"),
        ({"jmespath": "a", "import": "b:c"}, "exactly one key"),
        ("json.decoder:no_such_thing", "has no attribute"),
        ("json:decoder", "is not callable"),
        ("json:__doc__", "may not name dunder attributes"),
    ],
)
def test_bad_hooks(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        hook_from_spec(spec, "endpoints[1].transform_output", allow_imports=["json", "b"])
    assert (err.value.field or "").startswith("endpoints[1].transform_output")


def test_nothing_is_evaluated_as_python(tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    # Looks like Python; JMESPath has no such functions, so it is refused at load time.
    with pytest.raises(ConfigError, match=r"unknown function __import__\(\)"):
        hook_from_spec(f"__import__('os').system('touch {marker}')", "condition")
    assert not marker.exists()


def test_import_reference_must_look_like_one() -> None:
    with pytest.raises(ConfigError, match="not an import reference"):
        import_reference("os.system('x')", "f")


def test_a_jmespath_error_never_quotes_a_piece_of_a_hidden_value() -> None:
    """The parser's message names the token it stopped at: with a hidden ${ENV} value
    holding quotes, that token is a piece of the value, which scrubbing the whole value
    missed ("unexpected 'cdefghij'")."""
    from lamina import ConfigError
    from lamina.flows import config_from_dict

    for token, piece in (("ab' cdefghij 'x", "cdefghij"), ("ab' > 12345678 'x", "12345678")):
        flow = {
            "endpoints": [{"name": "a", "url": "http://x", "condition": "token == '${API_TOKEN}'"}]
        }
        with pytest.raises(ConfigError) as caught:
            config_from_dict(flow, env={"API_TOKEN": token})
        assert caught.value.field == "endpoints[0].condition"
        assert "invalid JMESPath expression" in str(caught.value)
        assert piece not in str(caught.value)
