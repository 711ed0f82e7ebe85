import logging

import pytest


@pytest.mark.django_db
def test_the_browsers_favicon_request_is_answered_without_a_warning_in_the_log(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.get("/favicon.ico")
    assert response.status_code == 204 and "max-age=86400" in response["Cache-Control"]
    assert [record.getMessage() for record in caplog.records] == []


@pytest.mark.django_db
def test_the_site_root_goes_to_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
