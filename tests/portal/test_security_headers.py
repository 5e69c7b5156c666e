from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path

import pytest
from django.conf import settings

from postman_email.middleware import DOCS_POLICY, PORTAL_POLICY

pytestmark = pytest.mark.django_db

PORTAL_PAGES = ["/", "/emails/", "/keys/", "/keys/new", "/members/", "/audit/"]


@pytest.mark.parametrize("path", PORTAL_PAGES)
def test_every_portal_page_has_the_strict_policy(owner_client, path):
    response = owner_client.get(path)

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Security-Policy"] == PORTAL_POLICY
    assert response["X-Frame-Options"] == "DENY"


def test_the_policy_is_strict():
    directives = dict(d.strip().split(" ", 1) for d in PORTAL_POLICY.split(";"))

    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert "unsafe" not in PORTAL_POLICY


@pytest.mark.parametrize("path", ["/login", "/does-not-exist"])
def test_anonymous_pages_have_it_too(client, path):
    assert client.get(path)["Content-Security-Policy"] == PORTAL_POLICY


def test_the_json_api_has_no_portal_policy(client):
    response = client.get("/v1/transactional/email")

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert "Content-Security-Policy" not in response


def test_swagger_ui_gets_its_own_policy(client):
    response = client.get("/docs")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Security-Policy"] == DOCS_POLICY
    assert "https:" not in DOCS_POLICY  # still nothing from another origin


def test_templates_have_no_inline_script_or_style():
    """The policy forbids them; a template that used them would break silently."""
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
    handler = re.compile(r"\son[a-z]+\s*=", re.I)
    style_block = re.compile(r"<style[\s>]", re.I)
    style_attribute = re.compile(r"\sstyle\s*=", re.I)
    portal_templates = [
        path
        for path in Path(settings.BASE_DIR, "templates").rglob("*.html")
        # Outgoing emails are not portal pages: mail clients need inline styles.
        if not path.name.endswith("_email.html")
        and "expiry_reminder" not in path.name
        and "admin" not in path.parts
    ]

    offenders = [
        str(path)
        for path in portal_templates
        for pattern in (inline_script, handler, style_block, style_attribute)
        if pattern.search(path.read_text())
    ]

    assert portal_templates
    assert offenders == []


def test_debug_error_pages_keep_their_inline_styles(client, settings):
    settings.DEBUG = True

    response = client.get("/does-not-exist")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "Content-Security-Policy" not in response
