"""gunicorn's settings for the web process; the command line and GUNICORN_CMD_ARGS override them.

gunicorn reads this file from the working directory (the repository root, as the Procfile and
``make bench`` run it). The reasons and the measurements behind each value are in
docs/performance.md.
"""

from __future__ import annotations

import os

# Sync workers: a send request is CPU-bound Python with short waits on PostgreSQL, so processes
# (one per request at a time, no GIL sharing) beat threads. Twice the cores keeps every core busy
# while some workers wait on the database.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
worker_class = "sync"
