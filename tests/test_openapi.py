"""The OpenAPI document at /v1/openapi.yaml and the Swagger UI at /docs (SPEC §3)."""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest
import yaml
from django.contrib.staticfiles import finders
from openapi_spec_validator import validate

ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(client, db) -> dict:
    response = client.get("/v1/openapi.yaml")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")  # YAML
    return yaml.safe_load(response.content)


def response_schema(operation: dict, status: int) -> dict:
    return operation["responses"][str(status)]["content"]["application/json"]["schema"]


def test_the_document_is_valid_openapi(schema):
    validate(schema)

    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Postman Email API"


def test_it_lists_the_three_operations(schema):
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }

    assert {
        ("POST", "/v1/transactional/email/send"),
        ("GET", "/v1/transactional/email"),
        ("GET", "/v1/transactional/email/{email_id}"),
    } <= operations


def test_every_operation_uses_bearer_auth(schema):
    schemes = schema["components"]["securitySchemes"]
    (name,) = [n for n, s in schemes.items() if (s["type"], s.get("scheme")) == ("http", "bearer")]

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == [{name: []}], (method, path)


def test_sending_takes_json_form_and_multipart(schema):
    """The send operation belongs to the send API; this pins the contract its schema shows."""
    send = schema["paths"]["/v1/transactional/email/send"]["post"]

    content = send["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert send["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Email"
    }


def test_the_read_operations_document_their_parameters_and_errors(schema):
    get = schema["paths"]["/v1/transactional/email/{email_id}"]["get"]
    listing = schema["paths"]["/v1/transactional/email"]["get"]

    assert [(p["in"], p["name"], p["schema"]["type"]) for p in get["parameters"]] == [
        ("path", "email_id", "integer")
    ]
    assert response_schema(get, 200) == {"$ref": "#/components/schemas/Email"}
    assert all(response_schema(get, status) == ERROR_SCHEMA for status in (400, 401, 404))

    parameters = {p["name"]: p for p in listing["parameters"]}
    assert set(parameters) == {
        "limit",
        "offset",
        "tag",
        "status",
        "created_at[gt]",
        "created_at[gte]",
        "created_at[lt]",
        "created_at[lte]",
        "sort_by",
        "exclude_params",
    }
    assert all(p["in"] == "query" for p in parameters.values())
    assert "+created_at" in parameters["sort_by"]["schema"]["enum"]
    assert "%2B" in parameters["sort_by"]["description"]
    assert parameters["created_at[gte]"]["schema"]["format"] == "date-time"
    assert response_schema(listing, 200) == {"$ref": "#/components/schemas/EmailList"}
    assert all(response_schema(listing, status) == ERROR_SCHEMA for status in (400, 401))


def test_the_email_object_is_described(schema):
    email = schema["components"]["schemas"]["Email"]["properties"]

    assert {
        "id",
        "from",
        "recipient",
        "params",
        "attachments_metadata",
        "status",
        "error_code",
        "error_sub_type",
        "accepted_at",
        "sent_at",
        "delivered_at",
        "opened_at",
        "created_at",
        "updated_at",
        "classification",
        "tag",
        "cc",
        "bcc",
    } <= set(email)
    email_list = schema["components"]["schemas"]["EmailList"]["properties"]
    assert email_list["has_more"] == {"type": "boolean"}
    assert email_list["data"]["items"] == {"$ref": "#/components/schemas/Email"}


def test_the_docs_are_served_without_a_cdn(client, db):
    response = client.get("/docs")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert not re.search(r"https?://", page)
    assert '"validatorUrl": null' in page  # no call to swagger.io's online validator
    assert 'url: "/v1/openapi.yaml"' in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        # Every file is one of ours, present among the static files the service serves.
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), asset
