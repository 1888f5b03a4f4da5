"""Bearer tokens from an identity provider, checked with the keys it publishes (JWKS), and CORS (issue 14).

The provider is real HTTP: a server on a loopback port serving an OpenID Connect discovery
document and a JWKS made from `cryptography` keys, counting the requests it answers. Nothing
of HTTP or PyJWT is mocked.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.app import create_app
from service.bootstrap import build_services
from service.settings import Settings
from tests.e2e.conftest import JWT_SECRET, ApiClient, User, problem

CLIENT_ID = "ocore-web"
REFRESH_S = 1.0  # MEMBERSHIP_JWKS_REFRESH_SECONDS in these tests
FRONT_END = "https://app.ocore.example"
JWKS = "/jwks"
DISCOVERY = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class SigningKey:
    """One of the provider's key pairs: it signs tokens, and publishes the public half in its JWKS."""

    kid: str
    algorithm: str
    private: Any

    @classmethod
    def rsa(cls) -> SigningKey:
        return cls(
            f"rsa-{uuid.uuid4().hex[:8]}", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    @classmethod
    def ec(cls) -> SigningKey:
        return cls(f"ec-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        to_jwk = RSAAlgorithm.to_jwk if self.algorithm == "RS256" else ECAlgorithm.to_jwk
        return {**to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def token(self, user: User, kid: str | None = None, **claims: Any) -> str:
        payload = {"sub": user.user_id, "email": user.email, "name": user.name, "exp": int(time.time()) + 3600}
        payload.update(claims)
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers={"kid": kid or self.kid})


class Provider:
    """An identity provider's two documents over HTTP: what it publishes can change, and it can fail."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.failing = False  # answer 500 to everything
        self.requests: Counter[str] = Counter()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                provider.requests[self.path] += 1
                documents = {DISCOVERY: {"issuer": provider.issuer, "jwks_uri": provider.issuer + JWKS},
                             JWKS: {"keys": [key.jwk() for key in provider.keys]}}  # fmt: skip
                status = 500 if provider.failing else 200 if self.path in documents else 404
                body = json.dumps(documents.get(self.path, {}) if status == 200 else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa()


@pytest.fixture(scope="module")
def next_rsa_key() -> SigningKey:
    return SigningKey.rsa()


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey.ec()


@pytest.fixture
def provider(rsa_key: SigningKey, ec_key: SigningKey) -> Iterator[Provider]:
    serving = Provider(rsa_key, ec_key)
    yield serving
    serving.close()


def provider_env(provider: Provider, **env: str) -> dict[str, str]:
    return {"MEMBERSHIP_OIDC_ISSUER": provider.issuer, "MEMBERSHIP_OIDC_CLIENT_ID": CLIENT_ID,
            "MEMBERSHIP_JWKS_REFRESH_SECONDS": str(REFRESH_S), **env}  # fmt: skip


@pytest.fixture
def api_settings(store: str, settings_for: Callable[..., Settings], provider: Provider) -> Settings:
    """The provider's tokens only (no MEMBERSHIP_JWT_SECRET, so no development secret either)."""
    return settings_for(store, **provider_env(provider))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def accepted(api: ApiClient, token: str) -> bool:
    response = api.get("/api/organizations", headers=bearer(token))
    assert response.status_code in (200, 401), response.get_data(as_text=True)
    return response.status_code == 200


# -- the provider's tokens ---------------------------------------------------------------------------------------
def test_an_rs256_token_of_the_provider_is_accepted_and_its_sub_is_the_user(
    api: ApiClient, provider: Provider, rsa_key: SigningKey
) -> None:
    assert provider.requests == Counter()  # nothing read before the first token
    user = api.user("owner")
    token = rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer)
    created = api.post("/api/organizations", json={"name": "Federated"}, headers=bearer(token))
    assert created.status_code == 201, created.json
    me = api.get("/api/me", org=created.json["id"], headers=bearer(token))
    assert (me.status_code, me.json["userId"], me.json["role"]["name"]) == (200, user.user_id, "Owner")
    assert provider.requests == Counter({DISCOVERY: 1, JWKS: 1})  # then kept


def test_an_es256_token_of_the_provider_is_accepted(api: ApiClient, provider: Provider, ec_key: SigningKey) -> None:
    assert accepted(api, ec_key.token(api.user(), aud=CLIENT_ID, iss=provider.issuer))


def test_the_issuer_with_a_trailing_slash_and_an_audience_list_are_accepted(
    api: ApiClient, provider: Provider, rsa_key: SigningKey
) -> None:
    assert accepted(api, rsa_key.token(api.user(), aud=["billing", CLIENT_ID], iss=provider.issuer + "/"))


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example.com", "aud": CLIENT_ID},
        {"aud": CLIENT_ID},
        {"iss": "ISSUER", "aud": "another-application"},
        {"iss": "ISSUER"},
    ],
    ids=["wrong-iss", "missing-iss", "wrong-aud", "missing-aud"],
)
def test_a_provider_token_for_another_issuer_or_audience_is_401_invalid_token(
    api: ApiClient, provider: Provider, rsa_key: SigningKey, claims: dict[str, str]
) -> None:
    claims = {name: provider.issuer if value == "ISSUER" else value for name, value in claims.items()}
    response = api.get("/api/organizations", headers=bearer(rsa_key.token(api.user(), **claims)))
    problem(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_signed_with_a_key_the_provider_does_not_publish_is_401(
    api: ApiClient, provider: Provider, rsa_key: SigningKey
) -> None:
    impostor = SigningKey(rsa_key.kid, "RS256", SigningKey.rsa().private)  # names the provider's key
    token = impostor.token(api.user(), aud=CLIENT_ID, iss=provider.issuer)
    problem(api.get("/api/organizations", headers=bearer(token)), 401, "invalid_token")


def test_an_hs256_token_is_401_when_only_the_provider_is_configured(api: ApiClient, provider: Provider) -> None:
    user = api.user()
    body = problem(api.get("/api/organizations", headers=bearer(api.token(user))), 401, "invalid_token")
    assert "kid" in body["detail"]
    forged = api.token(user, iss=provider.issuer, aud=CLIENT_ID)
    forged = jwt.encode(jwt.decode(forged, options={"verify_signature": False}), JWT_SECRET, headers={"kid": "x"})
    problem(api.get("/api/organizations", headers=bearer(forged)), 401, "invalid_token")


class TestAnApiAudience:
    """MEMBERSHIP_JWT_AUDIENCE set: access tokens for that API, not the client id's ID tokens."""

    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings], provider: Provider) -> Settings:
        return settings_for(store, **provider_env(provider, MEMBERSHIP_JWT_AUDIENCE="https://members.ocore.example"))

    def test_only_the_configured_audience_is_accepted(
        self, api: ApiClient, provider: Provider, rsa_key: SigningKey
    ) -> None:
        user = api.user()
        assert accepted(api, rsa_key.token(user, aud="https://members.ocore.example", iss=provider.issuer))
        assert not accepted(api, rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))


class TestAJwksUrl:
    """MEMBERSHIP_JWT_JWKS_URL with MEMBERSHIP_JWT_ISSUER and MEMBERSHIP_JWT_AUDIENCE: no discovery document."""

    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings], provider: Provider) -> Settings:
        return settings_for(
            store, MEMBERSHIP_JWT_JWKS_URL=provider.issuer + JWKS, MEMBERSHIP_JWT_ISSUER="https://id.example",
            MEMBERSHIP_JWT_AUDIENCE="members",
        )  # fmt: skip

    def test_its_keys_check_the_issuer_and_audience_given(
        self, api: ApiClient, provider: Provider, ec_key: SigningKey
    ) -> None:
        user = api.user()
        assert accepted(api, ec_key.token(user, iss="https://id.example", aud="members"))
        assert not accepted(api, ec_key.token(user, iss="https://id.example/", aud="members"))
        assert not accepted(api, ec_key.token(user, iss="https://id.example", aud=CLIENT_ID))
        assert provider.requests == Counter({JWKS: 1})


# -- key rotation ------------------------------------------------------------------------------------------------
def test_a_token_with_the_providers_new_key_is_accepted_after_one_refetch(
    api: ApiClient, provider: Provider, rsa_key: SigningKey, next_rsa_key: SigningKey
) -> None:
    user = api.user()
    assert accepted(api, rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))
    provider.keys = [next_rsa_key]  # rotated: the old key is withdrawn
    time.sleep(REFRESH_S)
    assert accepted(api, next_rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))
    assert provider.requests[JWKS] == 2
    assert not accepted(api, rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))  # no longer trusted


def test_a_burst_of_tokens_naming_unknown_keys_refetches_the_keys_at_most_once_per_interval(
    api: ApiClient, provider: Provider, rsa_key: SigningKey
) -> None:
    user = api.user()
    assert accepted(api, rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))
    time.sleep(REFRESH_S)
    started = time.monotonic()
    for _ in range(40):
        assert not accepted(api, rsa_key.token(user, kid=uuid.uuid4().hex, aud=CLIENT_ID, iss=provider.issuer))
    assert time.monotonic() - started < REFRESH_S  # the burst fell within one interval
    assert provider.requests[JWKS] == 2  # the first fetch, and one for the whole burst
    assert accepted(api, rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))
    assert provider.requests == Counter({DISCOVERY: 1, JWKS: 2})


# -- tokens naming no key (some providers sign ID tokens without a kid) -----------------------------------------
def kidless(key: SigningKey, user: User, **claims: Any) -> str:
    payload = {"sub": user.user_id, "email": user.email, "exp": int(time.time()) + 3600, **claims}
    return jwt.encode(payload, key.private, algorithm=key.algorithm)


def test_a_provider_token_naming_no_key_is_checked_with_each_of_the_providers_keys(
    api: ApiClient, provider: Provider, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    user = api.user()
    assert "kid" not in jwt.get_unverified_header(kidless(rsa_key, user))
    assert accepted(api, kidless(rsa_key, user, aud=CLIENT_ID, iss=provider.issuer))
    assert accepted(api, kidless(ec_key, user, aud=CLIENT_ID, iss=provider.issuer))
    assert not accepted(api, kidless(rsa_key, user, aud="another-client", iss=provider.issuer))
    assert not accepted(api, kidless(SigningKey.rsa(), user, aud=CLIENT_ID, iss=provider.issuer))  # unpublished


def test_a_token_naming_no_key_signed_by_a_rotated_key_is_accepted_after_one_refetch_per_interval(
    api: ApiClient, provider: Provider, rsa_key: SigningKey, next_rsa_key: SigningKey
) -> None:
    user = api.user()
    assert accepted(api, kidless(rsa_key, user, aud=CLIENT_ID, iss=provider.issuer))
    provider.keys = [next_rsa_key]
    time.sleep(REFRESH_S)
    assert accepted(api, kidless(next_rsa_key, user, aud=CLIENT_ID, iss=provider.issuer))
    assert provider.requests[JWKS] == 2
    unpublished, started = SigningKey.rsa(), time.monotonic()
    for _ in range(20):  # a burst of tokens no key verifies: no refetch within the interval
        assert not accepted(api, kidless(unpublished, user, aud=CLIENT_ID, iss=provider.issuer))
    assert time.monotonic() - started < REFRESH_S  # the burst fell within one interval
    assert provider.requests[JWKS] == 2


# -- the provider unavailable ------------------------------------------------------------------------------------
class TestAProviderThatIsDown:
    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings]) -> Settings:
        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            issuer = f"http://127.0.0.1:{closed.getsockname()[1]}"
        return settings_for(store, MEMBERSHIP_OIDC_ISSUER=issuer, MEMBERSHIP_OIDC_CLIENT_ID=CLIENT_ID)

    def test_a_provider_token_is_503_identity_provider_unavailable(self, api: ApiClient, rsa_key: SigningKey) -> None:
        response = api.get("/api/organizations", headers=bearer(rsa_key.token(api.user(), aud=CLIENT_ID)))
        problem(response, 503, "identity_provider_unavailable")
        assert response.headers["Retry-After"] == "5"


def test_a_failing_jwks_is_503_not_asked_again_at_once_and_recovers(
    api: ApiClient, provider: Provider, rsa_key: SigningKey
) -> None:
    token = rsa_key.token(api.user(), aud=CLIENT_ID, iss=provider.issuer)
    provider.failing = True
    problem(api.get("/api/organizations", headers=bearer(token)), 503, "identity_provider_unavailable")
    problem(api.get("/api/organizations", headers=bearer(token)), 503, "identity_provider_unavailable")
    assert sum(provider.requests.values()) == 1  # the second request did not ask
    provider.failing = False
    time.sleep(REFRESH_S)
    assert accepted(api, token)


class TestAProviderThatDoesNotAnswer:
    @pytest.fixture
    def silent(self) -> Iterator[str]:
        """An issuer that accepts connections and never answers."""
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            yield f"http://127.0.0.1:{listening.getsockname()[1]}"

    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings], silent: str) -> Settings:
        return settings_for(store, MEMBERSHIP_OIDC_ISSUER=silent, MEMBERSHIP_OIDC_CLIENT_ID=CLIENT_ID)

    def test_a_provider_token_is_503_after_the_timeout(
        self, api: ApiClient, silent: str, rsa_key: SigningKey, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("api.auth.FETCH_TIMEOUT_S", 0.3)
        started = time.monotonic()
        response = api.get("/api/organizations", headers=bearer(rsa_key.token(api.user(), aud=CLIENT_ID, iss=silent)))
        problem(response, 503, "identity_provider_unavailable")
        assert time.monotonic() - started < 2


# -- a development secret beside the provider --------------------------------------------------------------------
class TestASecretAndAProvider:
    """MEMBERSHIP_JWT_SECRET as well: tokens naming no key are checked with it, the others with the provider's."""

    @pytest.fixture
    def api_settings(self, store: str, settings_for: Callable[..., Settings], provider: Provider) -> Settings:
        return settings_for(store, **provider_env(provider, MEMBERSHIP_JWT_SECRET=JWT_SECRET))

    def test_both_kinds_of_token_are_accepted(self, api: ApiClient, provider: Provider, rsa_key: SigningKey) -> None:
        user = api.user()
        assert accepted(api, api.token(user))
        assert accepted(api, rsa_key.token(user, aud=CLIENT_ID, iss=provider.issuer))

    def test_a_token_naming_no_key_goes_by_its_algorithm(
        self, api: ApiClient, provider: Provider, rsa_key: SigningKey
    ) -> None:
        user = api.user()
        assert accepted(api, kidless(rsa_key, user, aud=CLIENT_ID, iss=provider.issuer))  # RS256: the provider's
        assert accepted(api, api.token(user))  # HS256: the secret's

    def test_a_secret_signed_token_naming_a_key_is_checked_with_the_providers_keys(
        self, api: ApiClient, provider: Provider, rsa_key: SigningKey
    ) -> None:
        user = api.user()
        token = jwt.encode({"sub": user.user_id, "exp": int(time.time()) + 60, "iss": provider.issuer, "aud": CLIENT_ID},
                           JWT_SECRET, headers={"kid": rsa_key.kid})  # fmt: skip
        problem(api.get("/api/organizations", headers=bearer(token)), 401, "invalid_token")


# -- CORS --------------------------------------------------------------------------------------------------------
@pytest.fixture
def cors_client(store: str, settings_for: Callable[..., Settings]) -> Iterator[FlaskClient]:
    """An app built for MEMBERSHIP_CORS_ORIGINS (the shared test apps are built without)."""
    services = build_services(settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET, MEMBERSHIP_CORS_ORIGINS=FRONT_END))
    yield create_app(services).test_client()
    services.close()


def preflight(client: FlaskClient, origin: str) -> Any:
    return client.options("/api/organizations", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-organization-id, idempotency-key",
    })  # fmt: skip


def cors_headers(response: Any) -> set[str]:
    return {name for name, _ in response.headers.items() if name.startswith("Access-Control")}


def test_an_allowed_origin_gets_cors_headers_on_a_preflight_and_a_get(cors_client: FlaskClient) -> None:
    allowed = preflight(cors_client, FRONT_END)
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == FRONT_END
    headers = {name.strip() for name in allowed.headers["Access-Control-Allow-Headers"].lower().split(",")}
    assert headers == {"authorization", "content-type", "x-organization-id", "idempotency-key"}
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    user = ApiClient.user()
    got = cors_client.get("/api/organizations", headers={"Origin": FRONT_END, **bearer(ApiClient.token(user))})
    assert got.status_code == 200 and got.headers["Access-Control-Allow-Origin"] == FRONT_END
    exposed = {name.strip() for name in got.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"X-Request-Id", "Retry-After", "Location"}
    assert "Access-Control-Allow-Credentials" not in got.headers


def test_another_origin_gets_no_cors_headers(cors_client: FlaskClient) -> None:
    assert "Access-Control-Allow-Origin" not in cors_headers(preflight(cors_client, "https://evil.example"))
    got = cors_client.get("/api/organizations", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in cors_headers(got)


def test_by_default_no_origin_gets_cors_headers(store: str, settings_for: Callable[..., Settings]) -> None:
    services = build_services(settings_for(store, MEMBERSHIP_JWT_SECRET=JWT_SECRET))
    try:
        client = create_app(services).test_client()
        assert cors_headers(preflight(client, FRONT_END)) == set()
        assert cors_headers(client.get("/api/organizations", headers={"Origin": FRONT_END})) == set()
    finally:
        services.close()
