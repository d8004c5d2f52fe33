"""A base URL from ``${ENV}`` is shown, secrets from the environment are not
(issue 14, item 14): the classifier of ``lamina.redact`` decides."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lamina.flows import describe_flow, load_flow
from lamina.testing import LocalServer

from .conftest import Cli

WriteFlow = Callable[..., Path]

FLOW = """
name: hosts
endpoints:
  - name: user
    url: ${API_BASE}/echo?id={user_id}&page=${PAGE}&sig=${SIGNING}
    headers:
      Authorization: Bearer ${API_TOKEN}
      X-Api-Key: ${PLAIN_NAME}
      X-Region: ${REGION}
"""

ENV = {
    "API_TOKEN": "tok-9a8b7c6d5e",  # a secret-named variable: hidden everywhere
    "PLAIN_NAME": "value-in-a-key-header",  # a plain name, but sent as a secret header
    "SIGNING": "sig-value-77",  # a plain name, but a secret query parameter
    "REGION": "eu-west-7",  # a plain name in a plain header: hidden (not a URL)
    "PAGE": "12345",
}
HIDDEN = ("tok-9a8b7c6d5e", "value-in-a-key-header", "sig-value-77", "eu-west-7")


def test_validate_and_run_show_the_host_from_env_but_not_the_secrets(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(FLOW)
    env = {**ENV, "API_BASE": lamina_server.url}
    validate = cli("validate", str(flow), env=env)
    assert validate.returncode == 0, validate.stderr
    assert f"user: GET {lamina_server.url}/echo?id={{user_id}}" in validate.stdout
    assert "X-Region=[REDACTED]" in validate.stdout
    run = cli("run", str(flow), "--json", "--input", '{"user_id": 3}', env=env)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["value"]["user"]["query"]["page"] == "12345"  # a plain query value of a URL
    for text in (validate.stdout, validate.stderr, run.stdout, run.stderr):
        for secret in HIDDEN:
            assert secret not in text
    sent = lamina_server.requests("/echo")[-1]
    assert sent.headers["authorization"] == "Bearer tok-9a8b7c6d5e"


def test_userinfo_in_a_base_url_stays_hidden(write_flow: WriteFlow) -> None:
    flow = write_flow("endpoints:\n  - name: a\n    url: ${BASE}/items\n")
    config = load_flow(flow, env={"BASE": "https://robot:pa55word@api.example.com"})
    shown = json.dumps(describe_flow(config))
    assert "pa55word" not in shown
    from lamina.flows import flow_info
    from lamina.flows.secrets import hidden_values

    hidden = hidden_values(flow_info(config).substitutions)
    assert "pa55word" in hidden
    assert "https://robot:pa55word@api.example.com" not in hidden


def test_a_secret_named_variable_stays_hidden_even_as_a_url(write_flow: WriteFlow) -> None:
    from lamina.flows import flow_info
    from lamina.flows.secrets import hidden_values

    flow = write_flow("endpoints:\n  - name: a\n    url: ${WEBHOOK_SECRET}\n")
    config = load_flow(flow, env={"WEBHOOK_SECRET": "https://hooks.example.com/T0/B1/xyz"})
    assert hidden_values(flow_info(config).substitutions) == {"https://hooks.example.com/T0/B1/xyz"}


def test_a_body_or_params_key_called_url_or_backend_is_no_url_field(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    """Only an endpoint's ``url`` and the flow's ``backend`` show their value: a body or
    params key that happens to be called ``url`` or ``backend`` holds data, hidden."""
    from lamina.flows import flow_info
    from lamina.flows.secrets import hidden_values

    flow = write_flow(
        f"""
endpoints:
  - name: post
    url: {lamina_server.url}/echo
    method: POST
    body:
      url: ${{CALLBACK}}
    params:
      backend: ${{THING}}
"""
    )
    env = {"CALLBACK": "private-callback-value", "THING": "thing-value-42"}
    hidden = hidden_values(flow_info(load_flow(flow, env=env)).substitutions)
    assert {"private-callback-value", "thing-value-42"} <= hidden
    validate = cli("validate", str(flow), env=env)
    run = cli("run", str(flow), env=env)
    assert validate.returncode == 0, validate.stderr
    assert run.returncode == 0, run.stderr
    for text in (validate.stdout, validate.stderr, run.stdout, run.stderr):
        assert "private-callback-value" not in text
        assert "thing-value-42" not in text


def test_userinfo_stays_hidden_decoded_and_as_the_basic_credential_it_becomes(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    """The client turns the URL's user info into ``Authorization: Basic base64(user:pw)``
    (percent-decoded): an upstream echoing it must not print it after the table."""
    import base64

    flow = write_flow("endpoints:\n  - name: a\n    url: ${BASE}/echo\n")
    host = lamina_server.url.removeprefix("http://")
    env = {"BASE": f"http://robot%40ci:pa%2Fss%3Aword99@{host}"}
    credential = base64.b64encode(b"robot@ci:pa/ss:word99").decode()
    run = cli("run", str(flow), env=env)
    assert run.returncode == 0, run.stderr
    sent = lamina_server.requests("/echo")[-1]
    assert sent.headers["authorization"] == f"Basic {credential}"  # the client did send it
    assert "value:" in run.stdout
    for text in (run.stdout, run.stderr):
        for secret in (credential, "pa/ss:word99", "robot@ci", "pa%2Fss%3Aword99"):
            assert secret not in text


def test_a_password_variable_in_user_info_is_hidden_as_a_basic_credential_too(
    write_flow: WriteFlow,
) -> None:
    import base64

    from lamina.flows import flow_info
    from lamina.flows.secrets import hidden_values

    flow = write_flow("endpoints:\n  - name: a\n    url: https://bot:${BOT_PASSWORD}@h.example/x\n")
    config = load_flow(flow, env={"BOT_PASSWORD": "s3cr%40t-pw"})
    hidden = hidden_values(flow_info(config).substitutions)
    assert {"s3cr%40t-pw", "s3cr@t-pw", base64.b64encode(b"bot:s3cr@t-pw").decode()} <= hidden
    plain = write_flow("endpoints:\n  - name: a\n    url: ${BASE}/x\n", name="plain.yaml")
    config = load_flow(plain, env={"BASE": "https://h.example"})
    assert hidden_values(flow_info(config).substitutions) == set()  # no user info: all shown
