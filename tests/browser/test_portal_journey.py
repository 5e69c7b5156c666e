"""A new agency user's first session, in a real browser: log in with the emailed code, create a
key, send with it through the API, find the email and its timeline, rotate and revoke the key."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from http import HTTPStatus

import pytest
from playwright.sync_api import Page, expect

from accounts.login import LOGIN_CODE_TAG
from emails.models import Email
from emails.services.delivery import email_deliver

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

CODE_RE = re.compile(r"<b>([A-Z0-9]{6})</b>")


def login_code_for(address: str) -> str:
    """The code from the outbox: the login email is an Email row like any other."""
    message = Email.objects.filter(recipient=address, tag=LOGIN_CODE_TAG).latest("id")
    return CODE_RE.search(message.html)[1]


def api(base_url: str, key: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def log_in(page: Page, address: str, *, path: str = "/") -> None:
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Work email address").fill(address)
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.get_by_label("Login code").fill(login_code_for(address))
    page.get_by_role("button", name="Log in").click()


def create_key(page: Page, label: str) -> str:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Create a key").first.click()
    page.get_by_label("Label").fill(label)
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("It is shown only once")).to_be_visible()
    # The copy button appears only when JavaScript runs (it is `hidden` in the HTML).
    expect(page.locator("[data-copy='#new-key']")).to_be_visible()
    return page.locator("#new-key").inner_text().strip()


def test_a_new_user_runs_their_first_integration(page: Page, live_server, smtp_peer):
    log_in(page, "alice@hdb.gov.sg")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("heading", name="Send your first email")).to_be_visible()
    expect(page.locator("nav[aria-label=Main] a[aria-current=page]")).to_have_text("Dashboard")

    key = create_key(page, "Appointments system")
    assert re.fullmatch(r"alice_v1_[A-Za-z0-9]{43}", key)

    status, sent = api(
        live_server.url,
        key,
        "/v1/transactional/email/send",
        {"recipient": "citizen@example.com", "subject": "Your appointment", "body": "<p>Hi</p>"},
    )
    assert status == HTTPStatus.CREATED
    email_deliver(email_id=int(sent["id"]))
    # The worker's batch may carry the login-code email too.
    assert [r.rcpt_tos for r in smtp_peer.received].count(["citizen@example.com"]) == 1

    page.get_by_role("link", name="Emails", exact=True).click()
    page.get_by_label("Recipient").fill("citizen@")
    page.get_by_role("button", name="Apply").click()
    row = page.get_by_role("row").filter(has_text="citizen@example.com")
    expect(row).to_have_count(1)
    expect(row.get_by_text("ACCEPTED")).to_be_visible()
    row.get_by_role("link", name="citizen@example.com").click()

    expect(page.get_by_role("heading", name="Your appointment")).to_be_visible()
    timeline = page.locator("ol.timeline")
    expect(timeline.locator("li").first).to_contain_text("Recorded")
    expect(timeline).to_contain_text("Received through the API")
    expect(page.locator("iframe.preview-frame")).to_have_attribute("sandbox", "")
    preview = page.frame_locator("iframe.preview-frame")
    expect(preview.get_by_text("Hi")).to_be_visible()

    # Rotate with a grace period: both keys work meanwhile.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Rotate Appointments system").click()
    page.get_by_label("1 hour").check()
    page.get_by_role("button", name="Rotate key").click()
    expect(page.get_by_role("heading", name=re.compile("Key rotated"))).to_be_visible()
    successor = page.locator("#new-key").inner_text().strip()
    assert successor != key
    assert api(live_server.url, key, "/v1/transactional/email")[0] == HTTPStatus.OK
    assert api(live_server.url, successor, "/v1/transactional/email")[0] == HTTPStatus.OK

    # Revoke the successor, after the confirmation step.
    page.get_by_role("link", name="I have copied the key").click()
    new_row = page.locator(
        "tr.key-row", has=page.locator("td:first-child", has_text=successor[-5:])
    )
    new_row.get_by_role("link", name=re.compile("^Revoke")).click()
    expect(page.get_by_role("heading", name=re.compile("Revoke"))).to_be_visible()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("is revoked")).to_be_visible()
    assert api(live_server.url, successor, "/v1/transactional/email")[0] == 401

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Postman Email")).to_be_visible()


def test_pages_break_no_content_security_policy_rule(page: Page, live_server):
    log_in(page, "alice@hdb.gov.sg")
    create_key(page, "Batch job")
    for path in ["/", "/emails/", "/keys/", "/keys/new", "/members/", "/audit/"]:
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()

    violations = [m.text for m in page.console_messages if "Content Security Policy" in m.text]
    assert violations == []


def test_the_portal_works_with_the_keyboard(page: Page, live_server):
    log_in(page, "alice@hdb.gov.sg", path="/keys/")
    expect(page).to_have_url(re.compile(r"/keys/$"))

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))


def test_a_member_sees_no_admin_pages(page: Page, live_server):
    from tests.factories import AgencyFactory, UserFactory

    agency = AgencyFactory(domain="hdb.gov.sg")
    UserFactory(agency=agency, email="alice@hdb.gov.sg")

    log_in(page, "bob@hdb.gov.sg")

    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Emails", exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Members")).to_have_count(0)
    response = page.goto("/members/")
    assert response.status == HTTPStatus.FORBIDDEN
