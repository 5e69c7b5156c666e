"""Django admin for emails, the blacklist and suppressions."""

from emails import admin_senders  # noqa: F401  (registers the sender admin)
