"""Django admin for sender domains and addresses (imported by emails/admin.py)."""
