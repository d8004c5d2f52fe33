"""The transport contract on uvloop (``lamina[uvloop]``; this folder's conftest picks
the loop): the same tests as ``test_contract.py``, for what depends on the event loop
(sockets, timeouts, cancellation, connection reuse, redirects, decoding), on every
transport."""

from __future__ import annotations

import asyncio

import pytest

uvloop = pytest.importorskip("uvloop")

from ..test_contract import (  # noqa: E402  (the contract's own tests, collected here again)
    test_a_timeout_while_queued_sent_nothing_and_says_how_long_it_waited,
    test_a_timeout_without_waiting_is_the_upstreams,
    test_at_most_max_in_flight_reach_the_server,
    test_connect_refused_is_connect_error,
    test_cross_origin_redirect_drops_every_secret_header,
    test_echo,
    test_gzip_bomb_stops_at_limit,
    test_hang_with_timeout_layer,
    test_json_body,
    test_no_hidden_resend_on_a_reused_connection,
    test_refused_once_not_retried,
    test_reset_is_transport_error_sent,
)

__all__ = [
    "test_a_timeout_while_queued_sent_nothing_and_says_how_long_it_waited",
    "test_a_timeout_without_waiting_is_the_upstreams",
    "test_at_most_max_in_flight_reach_the_server",
    "test_connect_refused_is_connect_error",
    "test_cross_origin_redirect_drops_every_secret_header",
    "test_echo",
    "test_gzip_bomb_stops_at_limit",
    "test_hang_with_timeout_layer",
    "test_json_body",
    "test_no_hidden_resend_on_a_reused_connection",
    "test_refused_once_not_retried",
    "test_reset_is_transport_error_sent",
]


async def test_these_tests_run_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
