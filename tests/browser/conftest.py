"""Real-browser tests: a real Chromium driven by Playwright, against a real `membership serve` process,
a real OpenID Connect provider and a real SMTP server. Nothing is mocked; a missing part fails the test
with what to install (never a skip).

- `chromium_executable`, `browser` (session): Debian's `chromium` (./scripts/test installs it and sets
  MEMBERSHIP_TEST_CHROMIUM); Playwright's own browser download is not used.
- `page`: a fresh browser context and page per test.
- `oidc_provider`: oidc-provider-mock on a loopback port of the test's own (users, codes and keys of its own).
- `smtp_inbox`: aiosmtpd on a free port, keeping every message.
- `live_server`: call it to start `membership serve` on the test's store, wired to the inbox.
- `axe_check`: call it with a page; fails on axe-core violations of impact "serious" or "critical".

A module whose tests may share a provider, an inbox and servers builds its own module-scoped fixtures
from `running_oidc_provider()`, `receiving_mail()` and `LiveServers` (tests/browser/test_accept_flows.py).

The store is SQLite unless a test asks for both (`pytestmark = BOTH_STORES`, as in tests/e2e).
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# authlib.deprecate's first import puts "always show AuthlibDeprecationWarning" ahead of every warning filter.
# Imported here, while pytest starts or collects, that filter stays behind the ones pytest sets for each test (the
# narrow ignores in setup.cfg); imported first inside a test, by the provider, it would override them.
import authlib.deprecate  # noqa: F401
import pytest
import requests
import werkzeug.serving
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import STORES, TEST_SECRET_KEY, store_url
from tests.e2e.conftest import ApiClient, User
from tests.servers import MEMBERSHIP, free_port

CHROMIUM_VARIABLE = "MEMBERSHIP_TEST_CHROMIUM"  # set by ./scripts/test
INSTALL_CHROMIUM = (
    "run ./scripts/test (it installs Chromium), or install Debian's chromium package "
    "(apt-get install chromium), or point MEMBERSHIP_TEST_CHROMIUM at a Chromium binary"
)
# As root Chromium needs --no-sandbox. This machine's network is closed: without the flags that stop its
# background connections (component updates, sync, QUIC) Chromium waits on refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_TIMEOUT_MS = 10_000  # each action and navigation; a page that never comes fails in seconds, not minutes
JWT_SECRET = "browser-jwt-secret-" + "s" * 32
SERVER_START_TIMEOUT_S = 20.0
BOTH_STORES = pytest.mark.parametrize("store", STORES, indirect=True)


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite, unless the test asks for both stores (BOTH_STORES)."""
    return store_url(request, tmp_path)


# -- Chromium -------------------------------------------------------------------------------------------------
def find_chromium(env: Mapping[str, str]) -> str:
    """The Chromium binary: MEMBERSHIP_TEST_CHROMIUM, else `chromium` on PATH; fails with how to install it."""
    given = env.get(CHROMIUM_VARIABLE)
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            pytest.fail(f"{CHROMIUM_VARIABLE}={given!r} is not an executable file: {INSTALL_CHROMIUM}", pytrace=False)
        return given
    found = shutil.which("chromium", path=env.get("PATH"))
    if not found:
        pytest.fail(f"no Chromium found: {INSTALL_CHROMIUM}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    return find_chromium(os.environ)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=chromium_executable, args=CHROMIUM_ARGS, timeout=60_000
            )
        except PlaywrightError as error:
            pytest.fail(f"Chromium ({chromium_executable}) did not start: {error}", pytrace=False)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a browser context of its own (no cookies or storage from other tests)."""
    context = browser.new_context()
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- axe-core -------------------------------------------------------------------------------------------------
@pytest.fixture
def axe_check() -> Callable[..., None]:
    """`axe_check(page, context=None)`: run axe-core (bundled by axe-playwright-python) on the page as it is
    now; fail listing each violation of impact "serious" or "critical", with the elements it found."""

    def check(page: Page, context: str | None = None) -> None:
        violations = Axe().run(page, context=context).response["violations"]
        serious = [v for v in violations if v.get("impact") in ("serious", "critical")]
        if serious:
            lines = [f"axe-core: {len(serious)} serious or critical accessibility violation(s) on {page.url}"]
            for violation in serious:
                lines.append(
                    f"- {violation['id']} ({violation['impact']}): {violation['help']} [{violation['helpUrl']}]"
                )
                lines.extend(f"    {', '.join(node['target'])}: {node['html'][:200]}" for node in violation["nodes"])
            pytest.fail("\n".join(lines), pytrace=False)

    return check


# -- OpenID Connect provider ----------------------------------------------------------------------------------
@dataclass
class OidcProvider:
    """oidc-provider-mock serving on a loopback port.

    Any client id and secret are accepted, with any redirect URI. Its sign-in form has one text field,
    `sub`, and the buttons "Authorize" and "Deny"; a `sub` typed there that `add_user` did not register
    signs in with the claims {"email": sub}. ID tokens are RS256, signed by the key its JWKS publishes,
    and carry no `kid` header.
    """

    issuer: str
    app: Any  # the provider's Flask app
    storage: Any  # its users, codes, tokens and signing key (`storage.jwk`)
    client_id: str = "membership-browser-tests"
    client_secret: str = "membership-browser-tests-secret"  # any secret is accepted
    retired_keys: list[Any] = field(default_factory=list)  # keys the JWKS still publishes after a rotation

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def server_env(self) -> dict[str, str]:
        """The live server's settings for signing in with this provider."""
        return {
            "MEMBERSHIP_OIDC_ISSUER": self.issuer,
            "MEMBERSHIP_OIDC_CLIENT_ID": self.client_id,
            "MEMBERSHIP_OIDC_CLIENT_SECRET": self.client_secret,
        }

    def metadata(self) -> dict[str, Any]:
        """Its discovery document (issuer, authorization/token/userinfo/end_session endpoints, jwks_uri)."""
        response = requests.get(self.discovery_url, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def jwks(self) -> dict[str, Any]:
        response = requests.get(f"{self.issuer}/jwks", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def add_user(self, sub: str, **claims: Any) -> None:
        """Register a user's claims (email, email_verified, name...), through the provider's own API."""
        response = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5)
        assert response.status_code == 204, response.text

    def authorize_url(
        self, redirect_uri: str, state: str, nonce: str | None = None, scope: str = "openid email profile"
    ) -> str:
        """Where a client sends the browser to sign in (the authorization code flow)."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
        }
        if nonce is not None:
            params["nonce"] = nonce
        return f"{self.issuer}/oauth2/authorize?{urlencode(params)}"

    def sign_in_form(self, page: Page, sub: str) -> None:
        """On the provider's sign-in page in `page`: type `sub` and press Authorize."""
        page.fill("input[name=sub]", sub)
        page.get_by_role("button", name="Authorize").click()

    def authorization_code(self, sub: str, redirect_uri: str, state: str = "state", nonce: str | None = None) -> str:
        """The code `sub` would bring back to `redirect_uri`, fetched over HTTP without a browser."""
        response = requests.post(
            self.authorize_url(redirect_uri, state, nonce), data={"sub": sub}, allow_redirects=False, timeout=5
        )
        assert response.status_code == 302, response.text[:2000]
        return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]

    def exchange(self, code: str, redirect_uri: str) -> dict[str, Any]:
        """The token endpoint's answer for a code (access_token, id_token, refresh_token...)."""
        response = requests.post(
            f"{self.issuer}/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            auth=(self.client_id, self.client_secret),
            timeout=5,
        )
        assert response.status_code == 200, response.text[:2000]
        return dict(response.json())

    def rotate_signing_key(self, keep_previous: bool = False) -> str:
        """Sign from now on with a new RSA key; return its kid. The JWKS publishes the new key and, with
        `keep_previous`, the one it replaces too (an overlapping rotation); otherwise the new one only."""
        from authlib import jose  # the provider's own key type (the import warns; see setup.cfg)

        previous = self.storage.jwk
        if keep_previous:
            self.retired_keys.insert(0, previous)
        else:
            self.retired_keys.clear()
        self.storage.jwk = jose.RSAKey.generate_key(is_private=True)
        return str(self.storage.jwk.as_dict()["kid"])

    def _published_keys(self) -> Any:
        import flask
        from authlib import jose

        return flask.jsonify(jose.KeySet((self.storage.jwk, *self.retired_keys)).as_dict())


@contextmanager
def running_oidc_provider() -> Iterator[OidcProvider]:
    """A provider of its own (under a second to start): its users, codes and signing keys are nobody else's.
    It runs in this process: a warning it raises obeys setup.cfg's filters."""
    import flask
    import oidc_provider_mock

    app = oidc_provider_mock.app()
    with app.test_request_context():
        app.preprocess_request()  # runs the provider's hook that exposes its storage
        storage = flask.g.oidc_provider_mock_storage
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="oidc-provider", daemon=True)
    thread.start()
    provider = OidcProvider(f"http://127.0.0.1:{server.server_port}", app, storage)
    app.view_functions["oidc-provider-mock.jwks"] = provider._published_keys  # the same keys, plus retired ones
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture
def oidc_provider() -> Iterator[OidcProvider]:
    """A provider of this test's own, so that its users, codes and signing keys never leak into another test."""
    with running_oidc_provider() as provider:
        yield provider


# -- SMTP -----------------------------------------------------------------------------------------------------
class SmtpInbox:
    """An aiosmtpd handler that keeps every message; `wait_for_message` hands each one out once."""

    host = "127.0.0.1"

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[list[str], EmailMessage]] = []  # (envelope recipients, message)
        self._handed_out: set[int] = set()
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
        with self._arrived:
            self.received.append(([str(a).lower() for a in envelope.rcpt_tos], message))  # type: ignore[arg-type]
            self._arrived.notify_all()
        return "250 Message accepted"

    def wait_for_message(self, to_address: str, timeout: float = 10.0) -> EmailMessage:
        """The first message to `to_address` (envelope recipient) not handed out yet; fails after `timeout` s."""
        wanted = to_address.lower()
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for index, (recipients, message) in enumerate(self.received):
                    if index not in self._handed_out and wanted in recipients:
                        self._handed_out.add(index)
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(recipients, str(m["Subject"])) for recipients, m in self.received]
                    pytest.fail(f"no e-mail to {to_address} within {timeout} s; the inbox holds {got}", pytrace=False)
                self._arrived.wait(remaining)


@contextmanager
def receiving_mail() -> Iterator[SmtpInbox]:
    """aiosmtpd on a free loopback port, keeping every message, until the block ends."""
    inbox = SmtpInbox(free_port())
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_inbox() -> Iterator[SmtpInbox]:
    with receiving_mail() as inbox:
        yield inbox


# -- the live server ------------------------------------------------------------------------------------------
@dataclass
class LiveServer:
    """A running `membership serve`: its base URL, and a JSON API client with tokens it accepts."""

    url: str
    database_url: str
    jwt_secret: str
    process: subprocess.Popen[bytes]
    stderr_path: Path
    session: requests.Session = field(default_factory=requests.Session)

    def token(self, user: User, **claims: Any) -> str:
        """An HS256 token for `user` signed with the server's MEMBERSHIP_JWT_SECRET (claims may be added,
        or removed with None)."""
        return ApiClient.token(user, key=self.jwt_secret, **claims)

    def api(
        self,
        method: str,
        path: str,
        user: User | None = None,
        org: str | None = None,
        json: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10,
    ) -> requests.Response:
        """One request to the JSON API: Bearer token of `user` (or `token`), X-Organization-Id of `org`."""
        sent = dict(headers or {})
        if token is None and user is not None:
            token = self.token(user)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if org is not None:
            sent["X-Organization-Id"] = str(org)
        return self.session.request(method, f"{self.url}{path}", json=json, headers=sent, timeout=timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole process group (gunicorn and its workers) after 15 s."""
        self.session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def _server_environment(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment without its MEMBERSHIP_* settings, then `overrides` (None removes one)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEMBERSHIP_")}
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def start_live_server(
    database_url: str,
    directory: Path,
    env: Mapping[str, str | None],
    with_worker: bool,
    args: Sequence[str] = (),
    timeout: float = SERVER_START_TIMEOUT_S,
) -> LiveServer:
    """`membership serve` on a free loopback port; returns once GET /api/health answers (any status)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [MEMBERSHIP, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    if with_worker:
        command.append("--with-worker")
    stderr_path = directory / "server.stderr"
    with (directory / "server.stdout").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            command, cwd=directory, env=_server_environment(env), stdout=out, stderr=err, start_new_session=True
        )
    jwt_secret = env.get("MEMBERSHIP_JWT_SECRET") or ""
    server = LiveServer(f"http://127.0.0.1:{port}", database_url, jwt_secret, process, stderr_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            status = process.returncode
            pytest.fail(
                f"`membership serve` exited with status {status} before answering:\n{_tail(server.stderr())}",
                pytrace=False,
            )
        try:
            requests.get(f"{server.url}/api/health", timeout=1)
            return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(
                f"`membership serve` did not answer GET /api/health within {timeout} s:\n{_tail(server.stderr())}",
                pytrace=False,
            )
        time.sleep(0.1)


class LiveServers:
    """Starts `membership serve` processes on `store` (unless told another database), mailing to `inbox`,
    each in a directory of its own under `directory`; `stop_all` stops every one it started."""

    def __init__(self, store: str, directory: Path, inbox: SmtpInbox) -> None:
        self.store, self.directory, self.inbox = store, directory, inbox
        self.started: list[LiveServer] = []

    def start(
        self,
        database_url: str | None = None,
        *,
        env: Mapping[str, str | None] | None = None,
        with_worker: bool | None = None,
        args: Sequence[str] = (),
    ) -> LiveServer:
        database_url = database_url or self.store
        directory = self.directory / f"server-{len(self.started)}"
        settings: dict[str, str | None] = {
            "MEMBERSHIP_DATABASE_URL": database_url,
            "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY,
            "MEMBERSHIP_JWT_SECRET": JWT_SECRET,
            "MEMBERSHIP_VAR_DIR": str(directory / "var"),
            "MEMBERSHIP_SMTP_HOST": self.inbox.host,
            "MEMBERSHIP_SMTP_PORT": str(self.inbox.port),
            "MEMBERSHIP_SMTP_STARTTLS": "false",
            **(env or {}),
        }
        if with_worker is None:
            with_worker = not database_url.startswith("sqlite")
        server = start_live_server(database_url, directory, settings, with_worker, args)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def live_server(store: str, tmp_path: Path, smtp_inbox: SmtpInbox) -> Iterator[Callable[..., LiveServer]]:
    """`live_server(database_url=None, *, env=None, with_worker=None, args=())` starts `membership serve` and
    returns a LiveServer; every one started is stopped after the test.

    The database is the test's store unless `database_url` is given (two servers may share one). On
    PostgreSQL the server runs the projections, mailer and jobs itself (--with-worker) unless told not to.
    Invitation e-mail goes to `smtp_inbox`. `env` adds settings (e.g. `oidc_provider.server_env`) or,
    with None as the value, removes one of those set here. MEMBERSHIP_PUBLIC_URL is never set: the server
    builds its links from where it listens. (A module sharing servers between its tests uses LiveServers.)
    """
    servers = LiveServers(store, tmp_path, smtp_inbox)
    try:
        yield servers.start
    finally:
        servers.stop_all()
