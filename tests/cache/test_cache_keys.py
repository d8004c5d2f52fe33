"""The default cache key: stable, discriminating, and free of secrets."""

from __future__ import annotations

import pytest

from lamina import ConfigError, Request
from lamina.layers.cache.keys import (
    ENV_SECRET,
    KeyScheme,
    cache_header_options,
    check_header_options,
    credentials_digest,
    default_key,
    key_secret,
    scoped_key,
)

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


# -- identity: every header but the ignored ones (issue 12, item 2) ----------------------

TENANT_HEADERS = ["X-RapidAPI-Key", "Ocp-Apim-Subscription-Key", "X-Auth-Key", "X-Tenant-ID"]


@pytest.mark.parametrize("header", TENANT_HEADERS)
def test_any_identifying_header_splits_keys_and_is_never_in_plaintext(header: str) -> None:
    a = req(headers={header: "acme"})
    b = req(headers={header: "globex"})
    assert len({default_key(a), default_key(b), default_key(req())}) == 3
    for key in (default_key(a), default_key(b)):
        assert "acme" not in key
        assert "globex" not in key
    # not a plain hash either: a guessed tenant id cannot be checked against the key
    import hashlib

    assert hashlib.sha256(b"acme").hexdigest()[:32] not in default_key(a)


@pytest.mark.parametrize(
    ("name", "value_a", "value_b"),
    [
        (
            "traceparent",
            "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "00-" + "c" * 32 + "-" + "d" * 16 + "-01",
        ),
        ("tracestate", "vendor=1", "vendor=2"),
        ("baggage", "k=1", "k=2"),
        ("User-Agent", "app/1.0", "app/2.0"),
        ("X-Request-ID", "r1", "r2"),
        ("X-Correlation-ID", "c1", "c2"),
        ("Request-Id", "q1", "q2"),
        ("Idempotency-Key", "i1", "i2"),
        ("Accept", "application/json", "text/plain"),
        ("Accept-Language", "fr", "de"),
        ("Cache-Control", "no-cache", "max-age=0"),
        ("Content-Length", "1", "2"),
    ],
)
def test_ignored_headers_do_not_split_keys(name: str, value_a: str, value_b: str) -> None:
    base = {"X-Tenant-ID": "acme"}
    a = req(headers={**base, name: value_a})
    b = req(headers={**base, name: value_b})
    assert default_key(a) == default_key(b) == default_key(req(headers=base))


@pytest.mark.parametrize("name", ["Host", "Forwarded", "Origin", "X-Client-Build", "Range"])
def test_headers_not_in_the_ignored_set_are_keyed(name: str) -> None:
    assert default_key(req(headers={name: "a"})) != default_key(req(headers={name: "b"}))


def test_header_names_any_case_and_order_across_names_do_not_matter() -> None:
    a = req(headers=[("X-Tenant-ID", "acme"), ("X-Region", "eu")])
    b = req(headers=[("x-region", "eu"), ("x-tenant-id", "acme")])
    assert default_key(a) == default_key(b)


def test_repeated_headers_keep_their_order_and_equal_the_joined_line() -> None:
    two_lines = req(headers=[("X-Scope", "a"), ("X-Scope", "b")])
    joined = req(headers=[("X-Scope", "a, b")])
    swapped = req(headers=[("X-Scope", "b"), ("X-Scope", "a")])
    assert default_key(two_lines) == default_key(joined)
    assert default_key(two_lines) != default_key(swapped)  # order within a field matters


def test_values_cannot_be_shifted_between_headers() -> None:
    a = req(headers={"X-A": "1", "X-B": "2"})
    b = req(headers={"X-A": "1hX-B:1:2", "X-B": ""})
    assert default_key(a) != default_key(b)


def test_scheme_extension_both_ways() -> None:
    scheme = KeyScheme(b"k" * 32, ignore=["X-Client-Build"], include=["User-Agent"])
    assert "x-client-build" in scheme.ignored
    assert "user-agent" not in scheme.ignored
    build = [scheme.key(req(headers={"X-Client-Build": v})) for v in ("1", "2")]
    agent = [scheme.key(req(headers={"User-Agent": v})) for v in ("a/1", "a/2")]
    assert build[0] == build[1]
    assert agent[0] != agent[1]


def test_digests_are_keyed_by_the_secret() -> None:
    one, two = KeyScheme(b"1" * 32), KeyScheme(b"2" * 32)
    tenant = req(headers={"X-Tenant-ID": "acme"}, json={"q": 1})
    assert one.identity(tenant) != two.identity(tenant)
    assert one.body(tenant) != two.body(tenant)
    assert one.key(tenant) != two.key(tenant)
    assert one.key(tenant) == KeyScheme(b"1" * 32).key(tenant)
    names = ("accept-language",)
    fr = req(headers={"Accept-Language": "fr"})
    assert one.vary_digest(fr, names) != two.vary_digest(fr, names)
    assert one.vary_digest(fr, names) != one.vary_digest(req(), names)  # absent != any value
    assert one.vary_digest(fr, names) == one.vary_digest(
        req(headers={"accept-language": "fr"}), names
    )
    assert "acme" not in repr(one)
    assert "1111" not in repr(one)


def test_identity_digests_are_cached_per_header_set() -> None:
    scheme = KeyScheme(b"s" * 32)
    headers = {"X-Tenant-ID": "acme", "User-Agent": "app"}
    scheme.key(req(headers=headers))
    scheme.key(req(headers={**headers, "traceparent": "00-1"}))  # ignored: same header set
    info = scheme._identities.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_scoped_key_is_per_caller_for_any_identifying_header() -> None:
    key = scoped_key(lambda r: "same-for-everyone")
    tenants = {key(req(headers={"X-Tenant-ID": t})) for t in ("acme", "globex")}
    assert len(tenants) == 2
    assert key(req(headers={"traceparent": "1"})) == key(req(headers={"traceparent": "2"}))


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("X-Tenant-ID", "ignore_headers"),  # a plain string, not a list
        (["bad name"], "ignore_headers"),
        ([1], "ignore_headers"),
    ],
)
def test_bad_header_lists_name_the_field(value: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_header_options(value, ())
    assert info.value.field == field


def test_a_name_in_both_lists_or_an_ignored_credential_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        check_header_options(["X-A"], ["x-a"])
    assert info.value.field == "ignore_headers"
    with pytest.raises(ConfigError) as info:
        check_header_options(["Authorization"], ())
    assert "credentials" in str(info.value)


def test_cache_header_options_normalises_and_validates() -> None:
    assert cache_header_options({"ignore": ["X-B", "x-a"], "include": ["User-Agent"]}) == {
        "ignore": ["x-a", "x-b"],
        "include": ["user-agent"],
    }
    for bad, field in [
        (["x"], "cache_headers"),
        ({"skip": ["x"]}, "cache_headers"),
        ({"include": "User-Agent"}, "cache_headers.include"),
    ]:
        with pytest.raises(ConfigError) as info:
            cache_header_options(bad)
        assert info.value.field == field


def test_key_secret_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    assert key_secret() is None
    assert key_secret("x" * 16) == b"x" * 16
    monkeypatch.setenv(ENV_SECRET, "e" * 32)
    assert key_secret() == b"e" * 32
    monkeypatch.setenv(ENV_SECRET, "short-secret")
    with pytest.raises(ConfigError) as info:
        key_secret()
    assert info.value.field == ENV_SECRET
    assert "short-secret" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        key_secret(b"tiny")
    assert info.value.field == "key_secret"
