"""The whole stack over HTTP (Flask's test client).

The HTTP concerns are tested on the embedded SQLite store. A module (or test) whose outcome
the store can change — text the database may refuse, concurrent claims, keyset cursors over
timestamps, parked events — also runs on PostgreSQL: it says so with `pytestmark = BOTH_STORES`.
The stores' own behaviour is tested in tests/integration, on both.

`api` is a small client that mints tokens for test users and speaks JSON;
projections run in a background thread as in production, and every command
waits for them (read-your-writes), so a GET right after a command sees it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api.app import create_app
from membership import Actor
from projections import outbox
from projections.engine.store import wait_for
from service.bootstrap import Services, build_mailer, build_services
from service.settings import Settings
from tests.conftest import STORES, store_url
from tests.factories import Clock, new_actor
from workers.jobs import JobRunner

JWT_SECRET = "e2e-jwt-secret-" + "s" * 32
BOTH_STORES = pytest.mark.parametrize("store", STORES, indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite, unless the test asks for both stores (BOTH_STORES)."""
    return store_url(request, tmp_path)


User = Actor  # who calls the API: the token's sub, email and name


class ApiClient:
    def __init__(self, client: FlaskClient, services: Services, clock: Clock) -> None:
        self.client, self.services, self.clock = client, services, clock

    # -- users and tokens ------------------------------------------------------------------------------------
    @staticmethod
    def user(label: str = "user") -> User:
        return new_actor(label)

    @staticmethod
    def token(user: User, key: str = JWT_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
        payload = {"sub": user.user_id, "email": user.email, "name": user.name, "exp": int(time.time()) + 3600}
        payload.update(claims)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm)

    # -- requests --------------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        user: User | None = None,
        org: UUID | str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> TestResponse:
        all_headers = dict(headers or {})
        if user is not None:
            all_headers.setdefault("Authorization", f"Bearer {self.token(user)}")
        if org is not None:
            all_headers["X-Organization-Id"] = str(org)
        return self.client.open(path, method=method, json=json, headers=all_headers, **kwargs)

    def get(self, path: str, user: User | None = None, org: UUID | str | None = None, **kw: Any) -> TestResponse:
        return self.request("GET", path, user, org, **kw)

    def post(self, path: str, user: User | None = None, org: UUID | str | None = None, **kw: Any) -> TestResponse:
        return self.request("POST", path, user, org, **kw)

    def put(self, path: str, user: User | None = None, org: UUID | str | None = None, **kw: Any) -> TestResponse:
        return self.request("PUT", path, user, org, **kw)

    def patch(self, path: str, user: User | None = None, org: UUID | str | None = None, **kw: Any) -> TestResponse:
        return self.request("PATCH", path, user, org, **kw)

    def delete(self, path: str, user: User | None = None, org: UUID | str | None = None, **kw: Any) -> TestResponse:
        return self.request("DELETE", path, user, org, **kw)

    # -- shortcuts for arranging a scene ---------------------------------------------------------------------
    def new_org(self, owner: User, name: str = "Acme") -> str:
        response = self.post("/api/organizations", owner, json={"name": name})
        assert response.status_code == 201, response.json
        return str(response.json["id"])

    def role_id(self, org: str, name: str, user: User) -> str:
        roles = self.get("/api/roles", user, org).json["roles"]
        return next(role["id"] for role in roles if role["name"] == name)

    def invitation_token(self, org: str, invitation_id: str) -> str:
        """What the invitation e-mail would carry."""
        return self.services.organizations.invitation_token(UUID(org), UUID(invitation_id))

    def join(self, org: str, inviter: User, role: str = "Viewer", label: str = "member") -> User:
        """A new member with `role`, invited by `inviter` and accepted, through the API."""
        user = self.user(label)
        invited = self.post(
            "/api/members/invite", inviter, org, json={"email": user.email, "roleId": self.role_id(org, role, inviter)}
        )
        assert invited.status_code == 201, invited.json
        accepted = self.post(
            "/api/auth/accept-invite", user, json={"token": self.invitation_token(org, invited.json["id"])}
        )
        assert accepted.status_code == 200, accepted.json
        return user

    def caught_up(self) -> None:
        """The read models show everything saved in-process, as a command's response waits for (read-your-writes):
        for scenes arranged through the application layer rather than one request each."""
        wait_for(self.services.read_db, self.services.organizations.recorder.max_notification_id(), timeout=10)

    def settled(self, timeout: float = 10) -> None:
        """`caught_up`, with every invitation e-mail sent (or skipped) and its outcome recorded and every bulk job
        finished: nothing the service does in the background is left to write (the mailer pauses between rounds
        under load; the job runner looks for jobs every 0.25 s)."""
        mailer = build_mailer(self.services)  # beside the service's own: it ingests what that one has not yet
        jobs = JobRunner(self.services.organizations, self.services.read_db)  # only asked what is unfinished
        deadline = time.monotonic() + timeout
        while True:
            self.caught_up()
            mailer.run_once()
            counts = outbox.counts(self.services.read_db)
            mail_busy = (
                counts.get(outbox.QUEUED)
                or counts.get(outbox.SENDING)
                or outbox.unrecorded(self.services.read_db, limit=1)
            )
            if not mail_busy and not jobs.unfinished():
                break
            assert time.monotonic() < deadline, (
                f"the background work did not settle: mail {counts}, jobs {jobs.unfinished()}"
            )
            time.sleep(0.02)
        self.caught_up()

    def member_id(self, org: str, user: User, viewer: User) -> str:
        members = self.get("/api/members?limit=200", viewer, org).json["members"]
        return next(m["id"] for m in members if m["userId"] == user.user_id)


def problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """Assert the response is an RFC 9457 problem with this status and code; return its body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["code"] == code, body
    assert body["title"] and body["detail"] and body["type"].endswith(code.replace("_", "-"))
    assert "Traceback" not in response.get_data(as_text=True)
    return body  # type: ignore[no-any-return]


@pytest.fixture
def api_settings(store: str, settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_PUBLIC_URL="https://ocore.example.com")


_APPS: list[Flask] = []


def app_over(services: Services, instance: int = 0) -> Flask:
    """The API over this test's parts. Building a Flask app costs ~0.1 s (flask-smorest writes the
    OpenAPI document), more than most tests, so each instance is built once per session and then
    pointed at the test's own parts, as `create_app` itself does; its other state is configuration."""
    services.settings.token_verification()  # what create_app checks first
    while len(_APPS) <= instance:
        _APPS.append(create_app(services))
    app = _APPS[instance]
    app.extensions["membership"] = services
    return app


@pytest.fixture
def api(api_settings: Settings) -> Iterator[ApiClient]:
    services = build_services(api_settings)
    clock = Clock()
    services.organizations.clock = clock
    app = app_over(services)
    services.start_projections()
    yield ApiClient(app.test_client(), services, clock)
    services.close()


@pytest.fixture
def second_api(api: ApiClient, api_settings: Settings) -> Iterator[ApiClient]:
    """Another app instance on the same store, without projections of its own (another API process)."""
    services = build_services(api_settings)
    services.organizations.clock = api.clock
    yield ApiClient(app_over(services, instance=1).test_client(), services, api.clock)
    services.close()
