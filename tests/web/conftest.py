"""The pages over HTTP (Flask's test client), on the real stores, with projections running as in production.

`site` is a browser's view: it keeps the session cookie, signs in through the development form (as the
embedded default offers it), and reads the CSRF token from the last page. Scenes are arranged through the
application layer. The same flows in a real Chromium with a real identity provider: tests/browser.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from membership import Actor, Receipt
from membership.organization import system_role_id
from projections.engine.store import wait_for
from service.bootstrap import Services, build_services, wsgi_app
from service.settings import Settings
from tests.conftest import store_url
from tests.factories import Clock, new_actor

JWT_SECRET = "web-jwt-secret-" + "s" * 32
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HEADING = re.compile(r"<h1>(.*?)</h1>", re.S)


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """SQLite, unless a test asks for both stores (tests.e2e.conftest.BOTH_STORES works here too)."""
    return store_url(request, tmp_path)


class Site:
    def __init__(self, client: FlaskClient, services: Services, clock: Clock) -> None:
        self.client, self.services, self.clock = client, services, clock
        self.last_page = ""

    # -- a browser -----------------------------------------------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> TestResponse:
        response = self.client.get(path, **kwargs)
        self.last_page = response.get_data(as_text=True)
        return response

    def post(self, path: str, data: dict[str, str], csrf: bool = True) -> TestResponse:
        form = {**data, "csrf_token": self.csrf_token()} if csrf else data
        response = self.client.post(path, data=form)
        self.last_page = response.get_data(as_text=True)
        return response

    def csrf_token(self) -> str:
        match = CSRF.search(self.last_page)
        assert match, "the last page has no form"
        return match.group(1)

    def sign_in(self, user: Actor, next_path: str = "") -> TestResponse:
        """Through the development form, as a person would."""
        self.get("/auth/login" + (f"?next={next_path}" if next_path else ""))
        return self.post("/auth/login", {"email": user.email, "name": user.name, "next": next_path})

    def signed_in_as(self) -> str | None:
        with self.client.session_transaction() as session:
            user = session.get("user")
        return None if user is None else str(user["sub"])

    # -- arranging a scene through the application ---------------------------------------------------------
    def organization(self, owner: Actor, name: str = "Acme") -> UUID:
        return self.caught_up(self.services.organizations.create_organization(owner, name)).organization_id

    def invite(self, org: UUID, owner: Actor, email: str, role: str = "developer", days: int = 7) -> Receipt:
        role_id = system_role_id(org, role)
        return self.caught_up(self.services.organizations.invite_member(org, owner, email, role_id, days))

    def link(self, org: UUID, owner: Actor, role: str = "viewer", max_uses: int = 0, days: int = 7) -> Receipt:
        role_id = system_role_id(org, role)
        return self.caught_up(self.services.organizations.create_invite_link(org, owner, role_id, max_uses, days))

    def caught_up(self, receipt: Receipt) -> Receipt:
        wait_for(self.services.read_db, receipt.position, timeout=10)
        return receipt

    def member_user_ids(self, org: UUID) -> set[str]:
        with self.services.organizations.reading(org) as organization:
            return set(organization.member_by_user)


def heading(response: TestResponse) -> str:
    match = HEADING.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:500]
    return " ".join(match.group(1).split())


@pytest.fixture
def site_settings(store: str, settings_for: Callable[..., Settings]) -> Settings:
    """As `membership serve` on loopback makes them (development sign-in on), no public URL given."""
    return settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET).served_at("127.0.0.1", 8000)


@pytest.fixture
def make_site() -> Iterator[Callable[[Settings], Site]]:
    built: list[Services] = []

    def make(settings: Settings) -> Site:
        services = build_services(settings)
        built.append(services)
        clock = Clock()
        services.organizations.clock = clock
        app = wsgi_app(services)
        services.start_projections()
        return Site(app.test_client(), services, clock)

    yield make
    for services in built:
        services.close()


@pytest.fixture
def site(make_site: Callable[[Settings], Site], site_settings: Settings) -> Site:
    return make_site(site_settings)


@pytest.fixture
def owner() -> Actor:
    return new_actor("owner")
