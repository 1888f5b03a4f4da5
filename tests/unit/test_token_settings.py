"""How bearer tokens are checked, as read from MEMBERSHIP_* variables: a static key, an identity provider, or both."""

from __future__ import annotations

from pathlib import Path

import pytest

from membership.database import ConfigurationError
from service.settings import Settings, TokenVerification

POSTGRES = {"MEMBERSHIP_DATABASE_URL": "postgresql://app@db/members", "MEMBERSHIP_SECRET_KEY": "k" * 40}
ISSUER = "https://id.example.com"
OIDC = {"MEMBERSHIP_OIDC_ISSUER": ISSUER + "/", "MEMBERSHIP_OIDC_CLIENT_ID": "ocore-web"}


def tokens(**env: str) -> TokenVerification:
    return Settings.from_env(env).token_verification()


@pytest.fixture(autouse=True)
def in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_an_oidc_issuer_is_token_configuration_enough_to_serve_on_postgresql() -> None:
    provider = tokens(**POSTGRES, **OIDC).provider
    assert provider is not None and provider.discovery_url == ISSUER + "/.well-known/openid-configuration"
    assert (provider.jwks_url, provider.issuer, provider.audience) == (None, (ISSUER, ISSUER + "/"), "ocore-web")
    assert (provider.refresh_s, provider.algorithms) == (60.0, ("RS256", "ES256"))


def test_without_any_token_configuration_postgresql_refuses_to_serve() -> None:
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_JWT_SECRET"):
        tokens(**POSTGRES)


def test_a_jwks_url_needs_an_issuer_and_an_audience() -> None:
    jwks = {**POSTGRES, "MEMBERSHIP_JWT_JWKS_URL": "https://id.example.com/keys"}
    for missing in ({}, {"MEMBERSHIP_JWT_ISSUER": ISSUER}, {"MEMBERSHIP_JWT_AUDIENCE": "members"}):
        with pytest.raises(ConfigurationError, match="MEMBERSHIP_JWT_ISSUER and MEMBERSHIP_JWT_AUDIENCE"):
            tokens(**jwks, **missing)
    provider = tokens(**jwks, MEMBERSHIP_JWT_ISSUER=ISSUER, MEMBERSHIP_JWT_AUDIENCE="members").provider
    assert provider is not None
    assert (provider.jwks_url, provider.discovery_url, provider.issuer) == (
        jwks["MEMBERSHIP_JWT_JWKS_URL"],
        None,
        (ISSUER,),
    )


def test_a_jwks_url_must_be_http_or_https() -> None:
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_JWT_JWKS_URL"):
        tokens(**POSTGRES, **OIDC, MEMBERSHIP_JWT_JWKS_URL="file:///etc/keys.json")


def test_the_audience_setting_replaces_the_client_id_and_the_refresh_interval_is_read() -> None:
    provider = tokens(
        **POSTGRES, **OIDC, MEMBERSHIP_JWT_AUDIENCE="api://members", MEMBERSHIP_JWKS_REFRESH_SECONDS="2.5"
    ).provider
    assert provider is not None and (provider.audience, provider.refresh_s) == ("api://members", 2.5)
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_JWKS_REFRESH_SECONDS"):
        tokens(**POSTGRES, **OIDC, MEMBERSHIP_JWKS_REFRESH_SECONDS="0")


def test_with_a_provider_on_sqlite_no_development_secret_is_made(tmp_path: Path) -> None:
    verification = tokens(**OIDC)
    assert (verification.key, verification.algorithms, verification.is_development_secret) == ("", (), False)
    assert not (tmp_path / "var" / "jwt_secret").exists()
    assert tokens().is_development_secret and (tmp_path / "var" / "jwt_secret").exists()


def test_a_secret_and_a_provider_both_check_tokens_chosen_by_their_kid() -> None:
    verification = tokens(**POSTGRES, **OIDC, MEMBERSHIP_JWT_SECRET="s" * 32)
    assert verification.algorithms == ("HS256",) and verification.provider is not None
    assert verification.provider_for({"alg": "RS256", "kid": "k1"}) is verification.provider
    assert verification.provider_for({"alg": "HS256"}) is None
