"""A fallback SMTP sink for ``bench/run.py`` when postfix's smtp-sink is not installed: accepts
every message and keeps none. ``python bench/sink.py PORT`` listens on 127.0.0.1 only.

It is several times slower than smtp-sink (docs/performance.md), so the delivery ceiling it gives
is lower too; the report says which sink was used.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.controller import Controller


class Discard:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 2.0.0 Ok: discarded"


def main() -> None:
    controller = Controller(Discard(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
