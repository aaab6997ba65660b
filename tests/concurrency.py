"""Running jobs in threads that interleave finely, to show that calls share no state."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def switching_often() -> Iterator[None]:
    """Threads switch every microsecond, so that two calls interleave."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def in_threads(jobs: list[Callable[[], None]]) -> None:
    """Run each job in its own thread, all at once; fail with what any of them raised."""
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    with switching_often():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
