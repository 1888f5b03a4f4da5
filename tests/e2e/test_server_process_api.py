"""A real `membership serve` process on a free port, spoken to over real HTTP (urllib), on both stores.

Create an organization, invite, accept, list members; then the access log on
stderr: one structured JSON record per request, with no token in it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from membership import Organizations
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.conftest import JWT_SECRET, ApiClient, User
from tests.servers import serving


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    stderr: Path
    stdout: Path

    def call(
        self, method: str, path: str, token: str | None = None, org: str | None = None, body: Any = None, **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) of one HTTP request; errors are answers too."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)  # noqa: S310 (loopback)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if org:
            request.add_header("X-Organization-Id", org)
        for name, value in headers.items():
            request.add_header(name.replace("_", "-"), value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, dict(response.headers), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"null")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def access_records(self) -> list[dict[str, Any]]:
        """The access-log records: stderr lines that are each one JSON object."""
        records = []
        for line in self.stderr.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if "request_id" in record:
                    records.append(record)
        return records


@pytest.fixture
def server(store: str, tmp_path: Path) -> Iterator[Server]:
    env = {
        "MEMBERSHIP_DATABASE_URL": store,
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_JWT_SECRET": JWT_SECRET,
    }
    stderr, stdout = tmp_path / "server.stderr", tmp_path / "server.stdout"
    with serving(env, tmp_path, "--with-worker", stdout=stdout, stderr=stderr) as (base, process):
        running = Server(base, process, stderr, stdout)
        try:
            yield running
        finally:
            running.stop()


def test_a_served_process_runs_the_member_lifecycle_and_logs_each_request_as_json_without_tokens(
    server: Server, make_organizations: Callable[..., Organizations]
) -> None:
    owner, invitee = ApiClient.user("owner"), ApiClient.user("invitee")
    owner_token, invitee_token = ApiClient.token(owner), ApiClient.token(invitee)

    status, _, org = server.call("POST", "/api/organizations", owner_token, body={"name": "Served"})
    assert status == 201 and org["name"] == "Served"
    status, _, roles = server.call("GET", "/api/roles", owner_token, org["id"])
    developer_role = next(r["id"] for r in roles["roles"] if r["name"] == "Developer")
    status, _, invitation = server.call(
        "POST", "/api/members/invite", owner_token, org["id"], {"email": invitee.email, "roleId": developer_role}
    )
    assert status == 201 and (invitation["email"], invitation["status"]) == (invitee.email, "pending")

    invitation_token = make_organizations().invitation_token(UUID(org["id"]), UUID(invitation["id"]))
    status, _, joined = server.call("POST", "/api/auth/accept-invite", invitee_token, body={"token": invitation_token})
    assert status == 200 and joined["organizationId"] == org["id"]
    assert joined["member"]["userId"] == invitee.user_id and joined["member"]["role"]["name"] == "Developer"

    request_id = f"e2e-{uuid4().hex}"
    status, headers, members = server.call("GET", "/api/members", owner_token, org["id"], X_Request_Id=request_id)
    assert status == 200 and headers["X-Request-Id"] == request_id
    assert members["total"] == 2
    assert {(m["userId"], m["role"]["name"]) for m in members["members"]} == {
        (owner.user_id, "Owner"),
        (invitee.user_id, "Developer"),
    }

    bad_token = ApiClient.token(User("intruder", "intruder@example.com", "I"), key="wrong-" + "k" * 40)
    status, headers, refused = server.call("GET", "/api/members", bad_token, org["id"])
    assert (
        status == 401 and refused["code"] == "invalid_token" and headers["Content-Type"] == "application/problem+json"
    )

    server.stop()
    records = server.access_records()
    listed = [r for r in records if r["request_id"] == request_id]
    assert len(listed) == 1, records
    record = listed[0]
    assert {"method", "path", "status", "duration_ms", "request_id", "user_id"} <= set(record)
    assert (record["method"], record["path"], record["status"], record["user_id"]) == (
        "GET",
        "/api/members",
        200,
        owner.user_id,
    )
    assert isinstance(record["duration_ms"], int | float) and record["duration_ms"] >= 0
    accepted = next(r for r in records if r["path"] == "/api/auth/accept-invite")
    assert (accepted["method"], accepted["status"], accepted["user_id"]) == ("POST", 200, invitee.user_id)
    refused_record = next(r for r in records if r["status"] == 401)
    assert refused_record["path"] == "/api/members" and refused_record["user_id"] is None
    assert [r["path"] for r in records if r["method"] != "GET" or r["path"] != "/api/health"] == [
        "/api/organizations",
        "/api/roles",
        "/api/members/invite",
        "/api/auth/accept-invite",
        "/api/members",
        "/api/members",
    ]

    output = server.stderr.read_text() + server.stdout.read_text()
    for token in (owner_token, invitee_token, bad_token):
        assert token not in output and token.split(".")[2] not in output
    access_lines = "\n".join(line for line in server.stderr.read_text().splitlines() if "api.access" in line)
    assert invitation_token not in access_lines


def test_a_served_process_answers_unknown_routes_with_a_problem_and_a_request_id(server: Server) -> None:
    status, headers, body = server.call("GET", "/api/no-such-route")
    assert status == 404 and body["code"] == "not_found" and body["status"] == 404
    assert headers["Content-Type"] == "application/problem+json" and headers["X-Request-Id"]
    time.sleep(0.1)
    server.stop()
    assert any(r["path"] == "/api/no-such-route" and r["status"] == 404 for r in server.access_records())
