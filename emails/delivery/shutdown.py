"""SIGTERM during a delivery: finish the hand-off or give the email back, never half of each.

django-q2 stops gracefully when its main process gets SIGTERM: the workers finish the tasks they
hold, then exit. But its worker processes keep the default SIGTERM action, so a SIGTERM sent to
the whole process group (``kill -TERM -<pgid>``, systemd's default ``KillMode=control-group``, a
container runtime) would kill a worker in the middle of an SMTP transaction. While a delivery
runs, ``sigterm_deferred`` turns SIGTERM into a flag: the delivery checks it before the point of
no return (the end of DATA) and releases its claim if it is set, or else finishes and records
the outcome; then the signal is raised again under the previous handler, so the process stops
as it would have.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


@contextmanager
def sigterm_deferred() -> Iterator[Callable[[], bool]]:
    """Within the block SIGTERM only sets a flag; yields a function telling whether it came.

    Signal handlers can only be set from the main thread (where django-q2 runs tasks); anywhere
    else this does nothing and the function always says no.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received = threading.Event()

    def defer(signum: int, frame: object) -> None:
        logger.info("SIGTERM received during a delivery: stopping after it")
        received.set()

    previous = signal.signal(signal.SIGTERM, defer)
    try:
        yield received.is_set
    finally:
        # None means a handler not installed from Python: treat it as the default action.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if received.is_set():
            signal.raise_signal(signal.SIGTERM)
