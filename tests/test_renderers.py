"""``ApiJSONRenderer``: DRF's JSON, byte for byte, written by orjson."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from postman_email.renderers import ApiJSONRenderer

CHARACTERS = (
    'abc XYZ 019 <p style="color: red">&amp;</p> \\ / \' é ü 中文 😀 \u2028 \u2029 \x00 \x1f \x7f '
    "\t\n\r\b\f"
)
SIMPLE = 0
NESTED = 1


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(0, 40)))


def random_scalar(rng: random.Random):
    kind = rng.randrange(14)
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8))
    moment += timedelta(microseconds=rng.choice([0, 1, 999, 123456]))
    return [
        lambda: random_string(rng),
        lambda: rng.randint(-(2**63), 2**63 - 1),
        lambda: rng.randint(-1000, 1000),
        lambda: rng.choice([True, False, None]),
        lambda: moment,
        lambda: moment.astimezone(timezone(timedelta(hours=8))),
        lambda: moment.replace(tzinfo=None),
        lambda: moment.date(),
        lambda: time(rng.randint(0, 23), rng.randint(0, 59), microsecond=rng.choice([0, 5000])),
        lambda: Decimal(rng.randint(-(10**6), 10**6)) / 100,
        lambda: uuid.UUID(int=rng.getrandbits(128)),
        lambda: gettext_lazy("Not found."),
        lambda: ErrorDetail(random_string(rng), code="invalid"),
        lambda: rng.choice([0.5, 0.1, 1.25, -3.0, 100.0]),
    ][kind]()


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(5) if depth < 4 else SIMPLE
    if kind in (SIMPLE, 4):
        return random_scalar(rng)
    items = rng.randint(0, 5)
    if kind == NESTED:
        return [random_value(rng, depth + 1) for _ in range(items)]
    if kind == 2:
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(items)}
    pairs = {random_string(rng): random_value(rng, depth + 1) for _ in range(items)}
    return ReturnDict(pairs, serializer=None)


@pytest.mark.parametrize("seed", range(6))
def test_the_output_is_drfs_for_random_values(seed):
    rng = random.Random(seed)
    for _ in range(500):
        value = random_value(rng)
        assert ApiJSONRenderer().render(value) == JSONRenderer().render(value), value


def test_line_and_paragraph_separators_are_escaped_as_drf_escapes_them():
    content = ApiJSONRenderer().render({"body": "one\u2028two\u2029three"})

    assert content == b'{"body":"one\\u2028two\\u2029three"}'


def test_values_orjson_refuses_are_rendered_by_drf():
    value = {"big": 2**70, "list": ReturnList([1, 2], serializer=None)}

    assert ApiJSONRenderer().render(value) == b'{"big":1180591620717411303424,"list":[1,2]}'


def test_a_string_that_cannot_be_utf_8_fails_as_it_does_with_drf():
    with pytest.raises(UnicodeEncodeError):
        JSONRenderer().render({"bad": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        ApiJSONRenderer().render({"bad": "\ud800"})


def test_an_unknown_type_fails_as_it_does_with_drf():
    with pytest.raises(TypeError):
        ApiJSONRenderer().render({"object": object()})


def test_an_indented_response_is_drfs():
    value = {"a": [1, {"b": "c"}]}
    media_type = "application/json; indent=2"

    content = ApiJSONRenderer().render(value, media_type)

    assert content == JSONRenderer().render(value, media_type)
    assert b'\n  "a"' in content


@pytest.mark.parametrize(
    "setting", [{"ensure_ascii": True}, {"compact": False}], ids=["ASCII", "spaced"]
)
def test_json_the_settings_ask_in_another_form_is_drfs(setting):
    value = {"text": "Kod anda — 谢谢", "list": [1, 2]}
    renderers = [type("Renderer", (base,), setting)() for base in (ApiJSONRenderer, JSONRenderer)]

    content, expected = (renderer.render(value) for renderer in renderers)

    assert content == expected
    assert content != ApiJSONRenderer().render(value)


def test_nothing_renders_as_an_empty_body():
    assert ApiJSONRenderer().render(None) == b""


def test_orjson_writes_the_output():
    # The visible differences, kept here as proof that orjson rendered it (the API writes no
    # floats): a small float's form, and NaN, which DRF's strict encoder refuses.
    assert ApiJSONRenderer().render({"x": 1e-7, "y": float("nan")}) == b'{"x":1e-7,"y":null}'
    assert JSONRenderer().render({"x": 1e-7}) == b'{"x":1e-07}'
    with pytest.raises(ValueError):
        JSONRenderer().render({"y": float("nan")})


def test_the_api_renders_with_it(api):
    body = {"recipient": "citizen@example.com", "subject": "Hi", "body": "<p>Ünïcode \u2028</p>"}

    response = api.client.post("/v1/transactional/email/send", body, format="json")

    assert response.status_code == 201
    assert isinstance(response.accepted_renderer, ApiJSONRenderer)
    assert response["Content-Type"] == "application/json"
    assert response.content == JSONRenderer().render(response.data)
