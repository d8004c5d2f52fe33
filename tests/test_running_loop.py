"""lamina._clock.running_loop: asyncio.get_running_loop() without Python 3.11's getpid()
per call, and never a loop that is not running in the calling thread."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from lamina._clock import default_clock, running_loop


def test_outside_a_loop_it_raises_like_asyncio() -> None:
    with pytest.raises(RuntimeError):
        running_loop()
    assert default_clock.now() > 0  # the clock falls back to time.monotonic()


def test_each_loop_in_turn_is_the_one_found() -> None:
    async def found() -> bool:
        return running_loop() is asyncio.get_running_loop()

    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:  # neither is closed: the second must not be taken for the first
        assert first.run_until_complete(found())
        assert second.run_until_complete(found())
        assert first.run_until_complete(found())
    finally:
        first.close()
        second.close()
    with pytest.raises(RuntimeError):
        running_loop()


def test_a_loop_running_in_another_thread_is_not_this_threads() -> None:
    """A loop found in one thread is not the answer in a thread running another loop,
    nor in a thread running none."""
    started = threading.Event()
    release = threading.Event()
    seen: dict[str, object] = {}

    async def hold() -> None:
        seen["other"] = running_loop()
        started.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait)

    other = threading.Thread(target=asyncio.run, args=(hold(),))
    other.start()
    try:
        assert started.wait(5)

        async def here() -> None:
            seen["here"] = running_loop()
            assert seen["here"] is asyncio.get_running_loop()

        asyncio.run(here())
        with pytest.raises(RuntimeError):
            running_loop()
    finally:
        release.set()
        other.join(5)
    assert seen["here"] is not seen["other"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_has_no_running_loop() -> None:
    """As asyncio: the parent's loop is not running in a child forked from inside it."""

    async def fork_and_look() -> int:
        running_loop()  # found (and remembered) in the parent
        pid = os.fork()
        if pid == 0:  # the child: report by exit status, never return into pytest
            try:
                running_loop()
            except RuntimeError:
                os._exit(0)
            os._exit(1)
        return pid

    _, status = os.waitpid(asyncio.run(fork_and_look()), 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.12+: asyncio's own, unchanged")
def test_on_312_it_is_asyncios_own() -> None:
    assert running_loop is asyncio.get_running_loop
