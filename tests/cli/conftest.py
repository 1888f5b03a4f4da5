"""The `ocore` CLI against a real `membership serve` process on a free port (SQLite).

One server for the whole CLI run; every test makes its own users and
organization, so tests never depend on each other. Commands run in-process
through click's CliRunner with OCORE_URL/OCORE_TOKEN/OCORE_ORG set, and with
$XDG_CONFIG_HOME pointing at a temporary directory (never the real config).
"""

from __future__ import annotations

import email
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from click.testing import CliRunner, Result

from ocore.cli import main
from tests.conftest import TEST_SECRET_KEY
from tests.factories import new_actor
from tests.servers import serving

JWT_SECRET = "cli-jwt-secret-" + "c" * 32


@dataclass(frozen=True)
class User:
    user_id: str
    email: str
    name: str

    @classmethod
    def new(cls, label: str = "user") -> User:
        actor = new_actor(label)
        return cls(actor.user_id, actor.email, actor.name)

    def token(self, **claims: Any) -> str:
        payload = {"sub": self.user_id, "email": self.email, "name": self.name, "exp": int(time.time()) + 3600}
        return jwt.encode({**payload, **claims}, JWT_SECRET, algorithm="HS256")


@dataclass
class Server:
    base: str
    outbox: Path
    seen: set[Path] = field(default_factory=set)

    def invitation_token(self, invitation_id: str, timeout: float = 10.0) -> str:
        """The token from the newest e-mail for this invitation not read before (the mailer writes .eml files)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Only whole messages: the outbox renames each finished file into place, and its temporary
            # names (".invitation….eml.<hex>.tmp") neither end in .eml nor match this pattern.
            fresh = [p for p in self.outbox.glob(f"invitation.{invitation_id}.*.eml") if p not in self.seen]
            if fresh:
                self.seen.update(fresh)
                message = email.message_from_bytes(fresh[0].read_bytes(), policy=policy.default)
                text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                match = re.search(r"/invite/accept\?token=([\w\-]+)", text)
                assert match, text
                return match.group(1)
            time.sleep(0.05)
        raise AssertionError(f"no e-mail for invitation {invitation_id} within {timeout} s")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("ocore-server")
    env = {
        "MEMBERSHIP_DATABASE_URL": f"sqlite:///{directory}/m.db",
        "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
        "MEMBERSHIP_JWT_SECRET": JWT_SECRET,
        "MEMBERSHIP_VAR_DIR": str(directory / "var"),
    }
    log = directory / "server.log"
    with serving(env, directory, stdout=log, stderr=directory / "server.err.log") as (base, _):
        yield Server(base, directory / "var" / "outbox")


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh config directory per test, and no OCORE_* variables from the outside."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("OCORE_URL", "OCORE_TOKEN", "OCORE_ORG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config" / "ocore" / "config.json"


Ocore = Callable[..., Result]


@pytest.fixture
def ocore(server: Server) -> Ocore:
    """Run `ocore ARGS...` as `user` in `org` (both optional); extra keyword env vars override."""

    def run(
        *args: str, user: User | None = None, org: str | None = None, input: str | None = None, **env: str
    ) -> Result:
        variables = {"OCORE_URL": server.base, "OCORE_TOKEN": user.token() if user else None, "OCORE_ORG": org}
        variables.update(env)
        return CliRunner().invoke(main, list(args), env=variables, input=input)

    return run


@dataclass
class Team:
    """An organization with its Owner, and helpers to grow it."""

    server: Server
    owner: User
    org: str
    link_codes: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, user: User | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {(user or self.owner).token()}", "X-Organization-Id": self.org}
        response = requests.request(method, f"{self.server.base}{path}", headers=headers, timeout=10, **kwargs)
        assert response.ok, response.text
        return response.json()

    def join(self, role: str = "Developer", label: str = "member") -> tuple[User, str]:
        """A new member with `role`, through an unlimited invite link; returns (user, member id)."""
        if role not in self.link_codes:
            roles = self.api("GET", "/api/roles")["roles"]
            role_id = next(r["id"] for r in roles if r["name"] == role)
            self.link_codes[role] = self.api("POST", "/api/invite-links", json={"roleId": role_id})["code"]
        user = User.new(label)
        joined = self.api("POST", "/api/auth/accept-invite-link", user, json={"code": self.link_codes[role]})
        return user, joined["member"]["id"]

    def member_id(self, user: User) -> str:
        return str(self.api("GET", "/api/me", user)["member"]["id"])


@pytest.fixture
def team(server: Server) -> Team:
    owner = User.new("owner")
    response = requests.post(
        f"{server.base}/api/organizations",
        json={"name": f"Team {owner.user_id}"},
        headers={"Authorization": f"Bearer {owner.token()}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return Team(server, owner, response.json()["id"])
