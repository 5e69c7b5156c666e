"""django-q2 task entry points for sender domains. Thin: the work is in
``emails.services.sender_domains``."""

from __future__ import annotations

from emails.services import sender_domains


def check_all_sender_domains() -> int:
    """Daily (the ``emails.sender_domain_checks`` schedule, created by a migration)."""
    return sender_domains.sender_domains_check_all()


def check_sender_domain(domain_id: int) -> None:
    sender_domains.sender_domain_check_by_id(domain_id=domain_id)
