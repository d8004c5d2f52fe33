import builtins
import pickle

import pytest

import lamina
from lamina import (
    ConfigError,
    ConnectError,
    HTTPStatusError,
    LaminaError,
    ParseError,
    Request,
    Response,
    TimeoutError,
    TransportError,
)

SECRET = "tok-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    "cls",
    [ConfigError, TransportError, ConnectError, TimeoutError, HTTPStatusError, ParseError],
)
def test_every_error_is_a_lamina_error(cls: type[Exception]) -> None:
    assert issubclass(cls, LaminaError)


def test_special_bases() -> None:
    assert issubclass(TimeoutError, builtins.TimeoutError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConnectError, TransportError)
    assert lamina.TimeoutError is TimeoutError


def test_errors_name_the_endpoint_and_hide_secrets() -> None:
    request = Request(
        "GET",
        f"https://api.example.com/u?token={SECRET}",
        headers={"Authorization": f"Bearer {SECRET}"},
        endpoint="users",
    )
    response = Response(503, request=request)
    err = HTTPStatusError.from_response(response)
    assert err.endpoint == "users"
    assert err.status_code == 503
    assert "[users]" in str(err)
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    timeout = TimeoutError("slow", request=request, timeout=1.0)
    assert SECRET not in str(timeout)
    assert "users" in str(timeout)


def test_errors_pickle() -> None:
    err = TimeoutError("slow", endpoint="users", timeout=2.0, request_sent=False)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, TimeoutError)
    assert (back.endpoint, back.timeout, back.request_sent) == ("users", 2.0, False)
    assert str(back) == str(err)


def test_config_error_names_field() -> None:
    err = ConfigError("must be > 0", field="timeout", endpoint="users")
    assert err.field == "timeout"
    assert "timeout: must be > 0" in str(err)
