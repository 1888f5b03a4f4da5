"""An unexpected failure answers a 500 problem with a request id, which the log repeats; never a traceback."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import ApiClient, problem


def test_an_unexpected_error_is_a_500_problem_whose_request_id_is_logged(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    with api.services.read_db.transaction() as cursor:
        cursor.execute("DROP TABLE roles_g1")  # an operator mistake the API cannot answer around

    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = api.get("/api/roles", owner, org, headers={"X-Request-Id": "req-500-check"})

    body = problem(response, 500, "internal_error")
    assert body["requestId"] == "req-500-check" and "req-500-check" in body["detail"]
    assert response.headers["X-Request-Id"] == "req-500-check"
    assert "roles_g1" not in response.get_data(as_text=True)  # no internals leak
    assert any("req-500-check" in record.getMessage() for record in caplog.records)
