from http import HTTPStatus


def test_healthz_answers_when_the_database_does(client, db):
    response = client.get("/healthz")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok"}


def test_unknown_api_path_answers_json_404(client, db):
    response = client.get("/v1/nothing-here")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {"code": "not_found", "message": "Not found."}
