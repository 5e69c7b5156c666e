"""Production settings plus the ceiling views, so that one gunicorn serves both.

The ceiling views live in ``bench.ceiling_urls`` and are never part of the production URLconf.
"""

from postman_email.settings import *  # noqa: F403

ROOT_URLCONF = "bench.ceiling_urls"
