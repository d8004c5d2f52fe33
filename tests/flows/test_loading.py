"""Flows from dicts and files: round trips, located errors, YAML safety, ${VAR}."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, ConfigError, OrchestrationMode
from lamina.flows import config_from_dict, config_to_dict, describe_flow, load_flow
from lamina.flows.expressions import Expression, ImportedHook

ROOT = Path(__file__).resolve().parents[2]


def flow(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "mode": "hybrid",
        "endpoints": [
            {"name": "auth", "url": "http://api.test/auth", "method": "POST"},
            {"name": "user", "url": "http://api.test/users/{id}", "depends_on": ["auth"]},
        ],
    }
    data.update(extra)
    return data


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- round trips -------------------------------------------------------------------------


def test_every_field_round_trips() -> None:
    data = {
        "name": "everything",
        "description": "all the fields",
        "mode": "parallel",
        "max_concurrent": 3,
        "total_timeout": None,
        "fail_fast": True,
        "global_rate_limit": 100,
        "rate_limit_window": 30,
        "result_merger": "[0]",
        "result_transformer": "@",
        "error_threshold": 0.5,
        "circuit_breaker_threshold": 2,
        "circuit_breaker_timeout": 5.0,
        "cache_ttl": 60,
        "cache_key_generator": "join('/', [method, url])",
        "metrics_enabled": False,
        "log_requests": True,
        "log_responses": True,
        "max_response_bytes": 2048,
        "layers": ["defaults", {"name": "concurrency", "options": {"max_concurrent": 2}}],
        "endpoints": [
            {
                "name": "a",
                "url": "https://api.test/a/{id}",
                "method": "PUT",
                "headers": {"X-Client": "lamina"},
                "params": {"page": 1},
                "body": {"k": [1, 2]},
                "timeout": 2.5,
                "retry_count": 0,
                "retry_delay": 0.2,
                "rate_limit": 60,
                "burst_limit": 2,
                "response_parser": "data",
                "error_handler": "type",
                "transform_input": "{id: id}",
                "transform_output": "items[0]",
                "condition": "id > `3`",
                "retry_on": [503],
            },
            {"name": "b", "url": "https://api.test/b", "depends_on": ["a"]},
        ],
    }
    config = config_from_dict(data)
    assert config.mode is OrchestrationMode.PARALLEL
    assert config.total_timeout is None
    assert config.endpoints[0].timeout == 2.5
    assert isinstance(config.endpoints[0].condition, Expression)
    assert config_to_dict(config) == data
    again = config_from_dict(config_to_dict(config))
    assert config_to_dict(again) == data


def test_defaults_are_left_out_and_python_configs_serialise() -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://x.test/a")], mode="pipeline"
    )
    assert config_to_dict(config) == {
        "mode": "pipeline",
        "endpoints": [{"name": "a", "url": "http://x.test/a"}],
    }


def test_module_level_function_serialises_as_import_reference() -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://x.test/a", transform_output=textwrap.dedent)]
    )
    assert config_to_dict(config)["endpoints"][0]["transform_output"] == "textwrap:dedent"


def test_lambda_cannot_be_written_to_a_flow() -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://x.test/a", condition=lambda ctx: True)]
    )
    with pytest.raises(ConfigError) as err:
        config_to_dict(config)
    assert err.value.field == "endpoints[0].condition"
    shown = describe_flow(config)  # printing never fails
    assert shown["endpoints"][0]["condition"].startswith("<python ")


def test_non_json_values_are_errors_when_writing_but_shown_when_describing() -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://x.test/a", method="POST", body=b"raw")]
    )
    with pytest.raises(ConfigError, match="cannot write a bytes") as err:
        config_to_dict(config)
    assert err.value.field == "endpoints[0].body"
    assert describe_flow(config)["endpoints"][0]["body"] == "<bytes>"


def test_import_reference_is_resolved_and_kept() -> None:
    config = config_from_dict(flow(result_transformer="json:dumps"), allow_imports=["json"])
    hook = config.result_transformer
    assert isinstance(hook, ImportedHook)
    assert hook({"a": 1}) == '{"a": 1}'
    assert config_to_dict(config)["result_transformer"] == "json:dumps"
    explicit = config_from_dict(
        flow(result_transformer={"import": "json:dumps"}), allow_imports="json"
    )
    assert explicit.result_transformer is not None
    assert explicit.result_transformer([1]) == "[1]"


# -- located errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        (lambda d: d["endpoints"][1].update(depends_on=["auht"]), "endpoints[1].depends_on",
         "unknown endpoint 'auht'"),
        (lambda d: d["endpoints"][0].update(timeout=0), "endpoints[0].timeout", "must be"),
        (lambda d: d["endpoints"][0].update(timeuot=3), "endpoints[0].timeuot",
         "did you mean 'timeout'?"),
        (lambda d: d.update(max_concurent=3), "max_concurent", "did you mean 'max_concurrent'?"),
        (lambda d: d.update(mode="paralel"), "mode", "unknown mode 'paralel'"),
        (lambda d: d["endpoints"][0].pop("url"), "endpoints[0].url", "is required"),
        (lambda d: d["endpoints"][0].update(condition="a >"), "endpoints[0].condition",
         "invalid JMESPath expression"),
        (lambda d: d["endpoints"][0].update(response_parser="no_such_mod_x:parse"),
         "endpoints[0].response_parser", "import of 'no_such_mod_x:parse' refused"),
        (lambda d: d["endpoints"][0].update(headers={"X-Version": 2}),
         "endpoints[0].headers.X-Version", "must be a string"),
        (lambda d: d["endpoints"].append(dict(d["endpoints"][0])), "endpoints[2].name",
         "duplicate endpoint name 'auth'"),
        (lambda d: d["endpoints"][0].update(depends_on=["user"]), "endpoints[0].depends_on",
         "dependency cycle"),
        (lambda d: d.update(endpoints="auth"), "endpoints", "must be a list"),
        (lambda d: d.update(endpoints=[]), "endpoints", "at least one endpoint"),
        (lambda d: d.update(layers=["retyr"]), "layers[0].name", "did you mean 'retry'?"),
        (lambda d: d.update(layers=[{"concurrency": {"max_concurent": 2}}]),
         "layers[0].options.max_concurent", "did you mean 'max_concurrent'?"),
        (lambda d: d.update(layers=[{"concurrency": {"max_concurrent": 0}}]),
         "layers[0].options.max_concurrent", "must be"),
        (lambda d: d.update(layers=[{"name": "timeout", "option": {}}]),
         "layers[0].option", "did you mean 'options'?"),
    ],
)  # fmt: skip
def test_errors_name_the_place(change: Any, field: str, text: str) -> None:
    data = flow()
    change(data)
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert text in str(err.value)


@pytest.mark.parametrize(
    ("reference", "text"),
    [
        ("no_such_mod_x:parse", "cannot import 'no_such_mod_x'"),
        ("json:nope", "has no attribute 'nope'"),
    ],
)
def test_allowed_imports_that_fail_name_the_place(reference: str, text: str) -> None:
    data = flow()
    data["endpoints"][0]["response_parser"] = reference
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, allow_imports=["no_such_mod_x", "json"])
    assert err.value.field == "endpoints[0].response_parser"
    assert text in str(err.value)


def test_issue_example_message_for_unknown_dependency() -> None:
    data = flow()
    data["endpoints"][0]["name"] = "login"
    data["endpoints"][1]["depends_on"] = ["login"]
    data["endpoints"].append({"name": "posts", "url": "http://api.test/p", "depends_on": ["auth"]})
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert str(err.value) == "endpoints[2].depends_on: unknown endpoint 'auth'"


def test_yaml_errors_carry_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        mode: hybrid
        endpoints:
          - name: user
            url: http://api.test/u
          - name: posts
            url: http://api.test/p
            depends_on: [auth]
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_flow(path)
    assert err.value.field == "endpoints[1].depends_on"
    assert str(err.value) == ("endpoints[1].depends_on: unknown endpoint 'auth' (bad.yaml, line 7)")


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("syntax.yaml", "endpoints: [\n", "not valid YAML"),
        ("syntax.toml", "endpoints = [\n", "not valid TOML"),
        ("empty.yaml", "", "the flow file is empty"),
        ("list.yaml", "- 1\n- 2\n", "a flow must be a mapping"),
        ("flow.ini", "x=1", "cannot tell the format"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_flow(write(tmp_path, name, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read flow file"):
        load_flow(tmp_path / "nope.yaml")


# -- YAML safety -----------------------------------------------------------------------------


def test_python_tags_are_rejected_without_side_effects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        "evil.yaml",
        f"""\
        mode: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ["{marker}"]]
        endpoints: []
        """,  # noqa: E501
    )
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_flow(path)
    assert "python/object/apply" in str(err.value)
    assert not marker.exists()


def test_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\nendpoints: []\n")
    with pytest.raises(ConfigError, match="more than 100000 values"):
        load_flow(path)


def test_python_name_tag_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "evil.yml", "mode: !!python/name:os.system\nendpoints: []\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_flow(path)


# -- formats ---------------------------------------------------------------------------------


def test_yaml_toml_and_json_give_the_same_config(tmp_path: Path) -> None:
    yaml_path = write(
        tmp_path,
        "f.yaml",
        """\
        mode: sequential
        endpoints:
          - {name: a, url: "http://api.test/a", timeout: 2, transform_output: "x.y"}
        """,
    )
    toml_path = write(
        tmp_path,
        "f.toml",
        """\
        mode = "sequential"
        [[endpoints]]
        name = "a"
        url = "http://api.test/a"
        timeout = 2
        transform_output = "x.y"
        """,
    )
    json_path = write(
        tmp_path,
        "f.json",
        '{"mode": "sequential", "endpoints": [{"name": "a", "url": "http://api.test/a",'
        ' "timeout": 2, "transform_output": "x.y"}]}',
    )
    dicts = [config_to_dict(load_flow(p)) for p in (yaml_path, toml_path, json_path)]
    assert dicts[0] == dicts[1] == dicts[2]


def test_example_flows_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMINA_BASE_URL", raising=False)
    names = sorted(p.name for p in (ROOT / "examples" / "flows").iterdir())
    assert names == [
        "health_check.yaml",
        "payment_pipeline.toml",
        "request_id.yaml",
        "user_enrichment.yaml",
    ]
    for name in names:
        if name == "request_id.yaml":
            continue  # needs the example plugin installed: see tests/test_plugins.py
        config = load_flow(ROOT / "examples" / "flows" / name)
        assert config.endpoints[0].url.startswith("http://127.0.0.1:8765/")


# -- environment -----------------------------------------------------------------------------

SECRET = "s3cr3t-Value-9f2"


def test_env_substitution_and_templates_round_trip() -> None:
    env = {"API_TOKEN": SECRET, "HOST": "api.test"}
    data = flow()
    data["endpoints"][0]["url"] = "https://${HOST}/auth"
    data["endpoints"][0]["headers"] = {"Authorization": "Bearer ${API_TOKEN}"}
    data["endpoints"][1]["params"] = {"q": "${MISSING:-fallback}", "lit": "$${HOST}"}
    config = config_from_dict(data, env=env)
    assert config.endpoints[0].url == "https://api.test/auth"
    assert config.endpoints[0].headers == {"Authorization": f"Bearer {SECRET}"}
    assert config.endpoints[1].params == {"q": "fallback", "lit": "${HOST}"}
    written = config_to_dict(config)
    assert written["endpoints"][0]["headers"] == {"Authorization": "Bearer ${API_TOKEN}"}
    assert written["endpoints"][0]["url"] == "https://${HOST}/auth"
    assert SECRET not in repr(written)
    resolved = config_to_dict(config, templates=False)
    assert resolved["endpoints"][0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_missing_variable_names_it_and_the_place() -> None:
    data = flow()
    data["endpoints"][1]["headers"] = {"X-Api-Key": "${API_KEY}"}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, env={})
    assert err.value.field == "endpoints[1].headers.X-Api-Key"
    assert "environment variable API_KEY is not set" in str(err.value)


def test_malformed_reference_is_an_error() -> None:
    data = flow()
    data["endpoints"][0]["url"] = "http://api.test/${oops"
    with pytest.raises(ConfigError, match="malformed"):
        config_from_dict(data, env={})


def test_secrets_never_appear_in_errors_or_descriptions() -> None:
    env = {"API_TOKEN": SECRET, "RETRIES": SECRET}
    data = flow()
    data["endpoints"][0]["retry_count"] = "${RETRIES}"  # a secret in the wrong place
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, env=env)
    assert err.value.field == "endpoints[0].retry_count"
    assert SECRET not in str(err.value)
    assert "[REDACTED]" in str(err.value)

    data = flow()
    data["endpoints"][0]["headers"] = {"Authorization": "Bearer ${API_TOKEN}"}
    data["endpoints"][0]["params"] = {"api_key": "k-123456", "page": "2"}
    data["endpoints"][1]["url"] = "http://user:pw123456@api.test/u?token=${API_TOKEN}"
    config = config_from_dict(data, env=env)
    shown = describe_flow(config)
    text = repr(shown)
    assert SECRET not in text
    assert "pw123456" not in text
    assert "k-123456" not in text
    assert shown["endpoints"][0]["headers"] == {"Authorization": "[REDACTED]"}
    assert shown["endpoints"][0]["params"] == {"api_key": "[REDACTED]", "page": "2"}
    assert SECRET not in repr(config)
