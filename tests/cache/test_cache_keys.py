"""The default cache key: stable, discriminating, and free of secrets."""

from __future__ import annotations

import pytest

from lamina import Request
from lamina.cache.keys import credentials_digest, default_key, scoped_key

TOKEN = "tok-9f8e7d6c5b4a"


def req(url: str = "http://api.test/users?b=2&a=1", **kw: object) -> Request:
    kw.setdefault("endpoint", "users")
    return Request(kw.pop("method", "GET"), url, **kw)  # type: ignore[arg-type]


def test_key_is_stable_and_readable() -> None:
    key = default_key(req())
    assert key == default_key(req())
    assert key.startswith("users|GET http://api.test/users?a=1&b=2|")


def test_query_order_and_params_merge_do_not_matter() -> None:
    a = req("http://api.test/users?b=2&a=1")
    b = req("http://api.test/users", params={"a": 1, "b": "2"})
    c = req("http://API.test/users?a=1", params={"b": 2})
    assert default_key(a) == default_key(b) == default_key(c)


@pytest.mark.parametrize(
    "other",
    [
        req(method="HEAD"),
        req("http://api.test/users?b=2&a=3"),
        req("http://api.test/other?b=2&a=1"),
        req(endpoint="posts"),
        req(json={"x": 1}),
        req(content=b"raw"),
        req(params={"flag": True}),
    ],
)
def test_each_part_of_the_request_changes_the_key(other: Request) -> None:
    assert default_key(other) != default_key(req())


def test_json_body_key_ignores_dict_order() -> None:
    assert default_key(req(json={"a": 1, "b": 2})) == default_key(req(json={"b": 2, "a": 1}))


def test_list_params_expand_like_httpx() -> None:
    assert default_key(req("http://api.test/u", params={"id": [1, 2]})) == default_key(
        req("http://api.test/u?id=1&id=2")
    )


@pytest.mark.parametrize(
    "header", ["Authorization", "Proxy-Authorization", "Cookie", "X-API-Key", "X-Auth-Token"]
)
def test_credentials_split_keys_and_are_never_in_plaintext(header: str) -> None:
    mine = req(headers={header: f"Bearer {TOKEN}"})
    theirs = req(headers={header: "Bearer someone-elses-token"})
    anonymous = req()
    keys = {default_key(mine), default_key(theirs), default_key(anonymous)}
    assert len(keys) == 3
    assert TOKEN not in default_key(mine)
    assert "Bearer" not in default_key(mine)
    assert credentials_digest(anonymous) == ""
    assert credentials_digest(mine)
    assert credentials_digest(mine) in default_key(mine)


def test_header_name_case_does_not_matter() -> None:
    a = req(headers={"authorization": TOKEN})
    b = req(headers={"AUTHORIZATION": TOKEN})
    assert default_key(a) == default_key(b)


def test_non_secret_headers_do_not_split_keys() -> None:
    assert default_key(req(headers={"Accept": "text/plain"})) == default_key(req())


@pytest.mark.parametrize(
    "request_",
    [
        req(f"http://api.test/files?token={TOKEN}&page=2"),
        req("http://api.test/files?page=2", params={"api_key": TOKEN}),
        req(f"https://x-amz-bucket.test/obj?X-Amz-Signature={TOKEN}&page=2"),
        req(f"http://user:{TOKEN}@api.test/files?page=2"),
    ],
)
def test_secret_query_values_and_userinfo_are_digested(request_: Request) -> None:
    key = default_key(request_)
    assert TOKEN not in key
    assert "page=2" in key
    assert credentials_digest(request_) in key
    # A different secret gives a different key.
    other = request_.replace(url=request_.url.replace(TOKEN, "another-secret"))
    other = other.replace(params={k: "another-secret" for k in request_.params})
    assert default_key(other) != key


def test_invalid_url_gives_an_opaque_key_instead_of_raising() -> None:
    key = default_key(req(f"http://[::1/users?token={TOKEN}"))
    assert "<unparsed" in key
    assert TOKEN not in key


def test_scoped_key_adds_namespace_and_credentials() -> None:
    key = scoped_key(lambda r: r.url)
    mine = req(headers={"Authorization": TOKEN})
    assert key(mine) != key(req())
    assert key(mine).startswith("users|http://api.test/users")
    assert TOKEN not in key(mine)
    assert key(req(endpoint="a")) != key(req(endpoint="b"))
