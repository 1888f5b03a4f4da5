"""MEMBERSHIP_* environment variables, read in one place and mapped to eventsourcing's."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from membership.database import ConfigurationError
from service.settings import DEFAULT_DATABASE_URL, Settings

KEY = "k" * 40


@pytest.fixture(autouse=True)
def in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Development keys are generated in ./var: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def test_the_default_is_embedded_sqlite_in_var() -> None:
    database = settings().database
    assert database.url == DEFAULT_DATABASE_URL
    assert database.sqlite_path == Path("var/membership.db")
    assert settings().eventsourcing_env()["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"


def test_sqlite_urls_take_relative_and_absolute_paths(tmp_path: Path) -> None:
    assert settings(
        MEMBERSHIP_DATABASE_URL="sqlite:///data/m.db", MEMBERSHIP_SECRET_KEY=KEY
    ).database.sqlite_path == Path("data/m.db")
    absolute = settings(MEMBERSHIP_DATABASE_URL=f"sqlite:///{tmp_path}/abs/m.db", MEMBERSHIP_SECRET_KEY=KEY)
    assert absolute.eventsourcing_env()["SQLITE_DBNAME"] == f"{tmp_path}/abs/m.db"


def test_a_postgresql_url_becomes_the_library_settings() -> None:
    url = "postgresql://app%40svc:p%2Fss@db.internal:6543/members?schema=tenant1"
    env = settings(MEMBERSHIP_DATABASE_URL=url, MEMBERSHIP_SECRET_KEY=KEY).eventsourcing_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == ("db.internal", "6543", "members")
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_SCHEMA"]) == ("app@svc", "p/ss", "tenant1")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/members", "unsupported scheme 'mysql'"),
        ("postgresql://db:notaport/members", "bad port"),
        ("postgresql://db:5432/", "names no database"),
        ("sqlite://", "names no database file"),
        ("sqlite:///:memory:", "names no database file"),
    ],
)
def test_a_wrong_database_url_is_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings(MEMBERSHIP_DATABASE_URL=url, MEMBERSHIP_SECRET_KEY=KEY)


def test_the_password_never_appears_in_errors() -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings(MEMBERSHIP_DATABASE_URL="postgresql://u:hunter2@db:bad/x", MEMBERSHIP_SECRET_KEY=KEY)
    assert "hunter2" not in str(raised.value)


def test_postgresql_requires_a_shared_secret_key() -> None:
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_SECRET_KEY is required"):
        settings(MEMBERSHIP_DATABASE_URL="postgresql://db/members")


def test_a_short_secret_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        settings(MEMBERSHIP_SECRET_KEY="short")


def test_on_sqlite_a_development_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/var/m.db"
    first, second = settings(MEMBERSHIP_DATABASE_URL=url), settings(MEMBERSHIP_DATABASE_URL=url)
    key_file = tmp_path / "var" / "secret_key"
    assert first.secret_key == second.secret_key == key_file.read_text().encode()
    assert len(first.secret_key) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("variable", ["MEMBERSHIP_SNAPSHOT_INTERVAL", "MEMBERSHIP_MAX_PENDING_INVITATIONS"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_numeric_settings_must_be_positive_whole_numbers(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        settings(MEMBERSHIP_SECRET_KEY=KEY, **{variable: value})


def test_numeric_settings_are_read() -> None:
    read = settings(
        MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_SNAPSHOT_INTERVAL="50", MEMBERSHIP_MAX_PENDING_INVITATIONS="7"
    )
    assert (read.snapshot_interval, read.max_pending_invitations) == (50, 7)


def test_rate_limits_have_defaults_and_are_read() -> None:
    default = settings(MEMBERSHIP_SECRET_KEY=KEY)
    read = settings(
        MEMBERSHIP_SECRET_KEY=KEY,
        MEMBERSHIP_ORGANIZATIONS_PER_HOUR="2",
        MEMBERSHIP_ACCEPT_FAILURES="5",
        MEMBERSHIP_ACCEPT_FAILURE_WINDOW_SECONDS="60",
    )
    assert (default.organizations_per_hour, default.accept_failures, default.accept_failure_window_s) == (10, 10, 600)
    assert (read.organizations_per_hour, read.accept_failures, read.accept_failure_window_s) == (2, 5, 60)
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_ORGANIZATIONS_PER_HOUR"):
        settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_ORGANIZATIONS_PER_HOUR="0")


# -- where the server is reached, sign-in and CORS ---------------------------------------------------------------
def test_links_point_where_the_server_listens_unless_a_public_url_is_given() -> None:
    served = settings(MEMBERSHIP_SECRET_KEY=KEY).served_at("127.0.0.1", 9000)
    assert (served.public_url, served.listen_host, served.development_sign_in) == ("http://127.0.0.1:9000", "127.0.0.1", True)
    assert settings(MEMBERSHIP_SECRET_KEY=KEY).served_at("::1", 9001).public_url == "http://[::1]:9001"
    given = settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_PUBLIC_URL="https://members.example.com/").served_at("0.0.0.0", 9000)  # noqa: S104
    assert (given.public_url, given.secure_cookies, given.development_sign_in) == ("https://members.example.com", True, False)


@pytest.mark.parametrize(("host", "allowed"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                         ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False)])  # noqa: S104
def test_the_development_sign_in_is_only_for_a_server_on_loopback(host: str, allowed: bool) -> None:
    assert settings(MEMBERSHIP_SECRET_KEY=KEY).served_at(host, 8000).development_sign_in is allowed
    with_issuer = settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_OIDC_ISSUER="https://id.example.com",
                           MEMBERSHIP_OIDC_CLIENT_ID="membership")  # fmt: skip
    assert with_issuer.served_at(host, 8000).development_sign_in is False
    assert settings(MEMBERSHIP_SECRET_KEY=KEY).development_sign_in is False  # not served: a worker, a tool


def test_the_identity_provider_needs_a_client_id_and_an_http_issuer() -> None:
    provider = settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_OIDC_ISSUER="https://id.example.com/realms/x/",
                        MEMBERSHIP_OIDC_CLIENT_ID="membership").oidc  # fmt: skip
    assert provider is not None and provider.issuer == "https://id.example.com/realms/x"
    assert provider.discovery_url == "https://id.example.com/realms/x/.well-known/openid-configuration"
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_OIDC_CLIENT_ID is required"):
        settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_OIDC_ISSUER="https://id.example.com")
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_OIDC_ISSUER must be an http"):
        settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_OIDC_ISSUER="id.example.com", MEMBERSHIP_OIDC_CLIENT_ID="x")
    with pytest.raises(ConfigurationError, match="MEMBERSHIP_PUBLIC_URL must be an http"):
        settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_PUBLIC_URL="ftp://example.com")


def test_cors_origins_are_an_allow_list_of_exact_origins() -> None:
    assert settings(MEMBERSHIP_SECRET_KEY=KEY).cors_origins == ()
    origins = settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_CORS_ORIGINS="https://app.example, http://localhost:5173/")
    assert origins.cors_origins == ("https://app.example", "http://localhost:5173")
    for wrong in ("*", "app.example", "https://app.example/path"):
        with pytest.raises(ConfigurationError, match="MEMBERSHIP_CORS_ORIGINS"):
            settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_CORS_ORIGINS=wrong)


def test_the_session_lifetime_is_set_in_hours() -> None:
    assert settings(MEMBERSHIP_SECRET_KEY=KEY).session_lifetime_s == 12 * 3600
    assert settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_SESSION_HOURS="2").session_lifetime_s == 7200


def test_event_encryption_and_compression_are_said_to_the_event_store_and_nothing_else_is() -> None:
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes
    on = settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_EVENT_CIPHER_KEY=key, MEMBERSHIP_EVENT_COMPRESSION="zlib")
    env = on.eventsourcing_env()
    assert (env["CIPHER_TOPIC"], env["CIPHER_KEY"]) == ("eventsourcing.cryptography:AESCipher", key)
    assert env["COMPRESSOR_TOPIC"] == "eventsourcing.compressor:ZlibCompressor"
    assert key not in repr(on)
    off = settings(MEMBERSHIP_SECRET_KEY=KEY).eventsourcing_env()
    # Said as empty, so a CIPHER_TOPIC or COMPRESSOR_TOPIC in the process environment does not apply by accident
    assert (off["CIPHER_TOPIC"], off["CIPHER_KEY"], off["COMPRESSOR_TOPIC"]) == ("", "", "")


@pytest.mark.parametrize(
    "key", ["short", "c2hvcnQ=", "not base64!", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMQ=="]
)
def test_a_cipher_key_of_the_wrong_size_or_shape_is_one_clear_error(key: str) -> None:
    with pytest.raises(ConfigurationError, match="16, 24 or 32 random bytes in base64"):
        settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_EVENT_CIPHER_KEY=key)


def test_an_unknown_compression_is_one_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="must be zlib or none, not 'lz4'"):
        settings(MEMBERSHIP_SECRET_KEY=KEY, MEMBERSHIP_EVENT_COMPRESSION="lz4")
