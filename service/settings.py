"""All configuration, read from `MEMBERSHIP_*` environment variables in one place.

`MEMBERSHIP_DATABASE_URL` picks the store (`membership.database`); the rest is the API's
token checks, SMTP, public URL, limits and caches. Every process reads its settings here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from membership.database import ConfigurationError, Database
from membership.personal_data import MasterKeys

DEFAULT_DATABASE_URL = "sqlite:///var/membership.db"
DEFAULT_REQUEST_TIMEOUT_S = 10.0  # `membership serve --request-timeout`: seconds a client has to send a request
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
JWT_SECRET_FILE = "jwt_secret"  # noqa: S105


@dataclass(frozen=True, eq=False)  # compared by identity: each reading of the settings has its own key cache
class ProviderKeys:
    """Tokens an identity provider signs with a key it publishes (JWKS), named by the token's `kid`.

    The JWKS is read on first use (`jwks_url`, else the `jwks_uri` of the discovery document), and again
    when a token names a key it lacks, at most once per `refresh_s`. `iss` must be one of `issuer` and
    `aud` must contain `audience`: the provider signs tokens for every application it serves.
    """

    discovery_url: str | None
    jwks_url: str | None
    issuer: tuple[str, ...]
    audience: str
    refresh_s: float = 60.0
    algorithms: tuple[str, ...] = ("RS256", "ES256")

    @classmethod
    def from_env(cls, env: Mapping[str, str], oidc: OpenIdProvider | None) -> ProviderKeys | None:
        jwks_url = env.get("MEMBERSHIP_JWT_JWKS_URL", "").strip() or None
        if jwks_url is None and oidc is None:
            return None
        if jwks_url is not None:
            _check_url("MEMBERSHIP_JWT_JWKS_URL", jwks_url)
        audience = env.get("MEMBERSHIP_JWT_AUDIENCE") or (oidc.client_id if oidc else "")
        if oidc is not None:  # with or without the trailing slash some providers (Auth0) put in `iss`
            issuer: tuple[str, ...] = (oidc.issuer, oidc.issuer + "/")
        else:
            issuer = (env.get("MEMBERSHIP_JWT_ISSUER", ""),) if env.get("MEMBERSHIP_JWT_ISSUER") else ()
        if not issuer or not audience:
            raise ConfigurationError(
                "MEMBERSHIP_JWT_JWKS_URL needs MEMBERSHIP_JWT_ISSUER and MEMBERSHIP_JWT_AUDIENCE (or MEMBERSHIP_OIDC_ISSUER"
                " and its client id): the provider's keys sign tokens for other applications too"
            )
        refresh_s = _positive_float(env, "MEMBERSHIP_JWKS_REFRESH_SECONDS", 60.0)
        return cls(oidc.discovery_url if oidc else None, jwks_url, issuer, audience, refresh_s)


@dataclass(frozen=True)
class TokenVerification:
    """How bearer tokens are checked: keys and algorithms come from here, never from a token.

    A token naming a key (`kid`) is checked with the identity provider's keys, when one is configured, and
    so is one naming none in an algorithm only the provider's keys serve (some providers sign ID tokens without
    a `kid`); any other with `key`: an HS256 secret or an RS256 PEM public key (empty with a provider alone).
    """

    algorithms: tuple[str, ...] = ()
    key: str = field(default="", repr=False)
    issuer: str | None = None
    audience: str | None = None
    is_development_secret: bool = False
    provider: ProviderKeys | None = None

    def provider_for(self, header: Mapping[str, object]) -> ProviderKeys | None:
        """Whose keys check a token with this (unverified) header: the provider's, if it names one of its keys
        (`kid`) or uses an algorithm of the provider's that `key` does not serve."""
        if self.provider is None:
            return None
        if "kid" in header:
            return self.provider
        algorithm = header.get("alg")
        served_by_key = bool(self.key) and algorithm in self.algorithms
        return self.provider if algorithm in self.provider.algorithms and not served_by_key else None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], database: Database, oidc: OpenIdProvider | None = None
    ) -> TokenVerification | None:
        """None when unset on PostgreSQL: workers need no tokens, and the API refuses to start without.
        On SQLite without any, an HS256 secret is generated into var/ (not when a provider is configured)."""
        issuer, audience = env.get("MEMBERSHIP_JWT_ISSUER") or None, env.get("MEMBERSHIP_JWT_AUDIENCE") or None
        provider = ProviderKeys.from_env(env, oidc)
        key_file = env.get("MEMBERSHIP_JWT_PUBLIC_KEY_FILE", "")
        if key_file:
            try:
                pem = Path(key_file).read_text()
            except OSError as error:
                raise ConfigurationError(f"MEMBERSHIP_JWT_PUBLIC_KEY_FILE: cannot read {key_file!r}: {error}") from None
            if "PUBLIC KEY" not in pem:
                raise ConfigurationError(f"MEMBERSHIP_JWT_PUBLIC_KEY_FILE: {key_file!r} holds no PEM public key")
            return cls(("RS256",), pem, issuer, audience, provider=provider)
        secret = env.get("MEMBERSHIP_JWT_SECRET", "")
        if secret:
            if len(secret) < 32:
                raise ConfigurationError("MEMBERSHIP_JWT_SECRET must have at least 32 characters")
            return cls(("HS256",), secret, issuer, audience, provider=provider)
        if provider is not None:
            return cls(issuer=issuer, audience=audience, provider=provider)
        if database.backend != "sqlite":
            return None
        development = _local_secret_key(database.var_dir / JWT_SECRET_FILE).decode()
        return cls(("HS256",), development, issuer, audience, is_development_secret=True)


@dataclass(frozen=True)
class Smtp:
    """Where invitation e-mails go; without MEMBERSHIP_SMTP_HOST they are written to var/outbox."""

    host: str = ""
    port: int = 587
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = True
    implicit_tls: bool = False
    sender: str = "oCore <no-reply@ocore.localhost>"
    timeout_s: float = 10.0
    retry_base_s: float = 5.0  # first retry after this, doubling up to retry_max_s
    retry_max_s: float = 600.0
    lease_s: float = 120.0  # a delivery claimed by a sender that died is retried after this

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Smtp:
        implicit = _flag(env, "MEMBERSHIP_SMTP_SSL", False)
        return cls(
            host=env.get("MEMBERSHIP_SMTP_HOST", ""),
            port=_positive_int(env, "MEMBERSHIP_SMTP_PORT", 465 if implicit else 587),
            username=env.get("MEMBERSHIP_SMTP_USERNAME", ""),
            password=env.get("MEMBERSHIP_SMTP_PASSWORD", ""),
            starttls=_flag(env, "MEMBERSHIP_SMTP_STARTTLS", not implicit),
            implicit_tls=implicit,
            sender=env.get("MEMBERSHIP_SMTP_FROM") or cls.sender,
            retry_base_s=_positive_float(env, "MEMBERSHIP_SMTP_RETRY_BASE_SECONDS", 5.0),
            lease_s=_positive_float(env, "MEMBERSHIP_SMTP_LEASE_SECONDS", 120.0),
        )


@dataclass(frozen=True)
class OpenIdProvider:
    """The OpenID Connect provider people sign in with (Authorization Code flow with PKCE)."""

    issuer: str  # its discovery document is {issuer}/.well-known/openid-configuration
    client_id: str
    client_secret: str = field(default="", repr=False)  # empty: a public client (PKCE only)
    scopes: str = "openid email profile"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpenIdProvider | None:
        issuer = env.get("MEMBERSHIP_OIDC_ISSUER", "").strip().rstrip("/")
        if not issuer:
            return None
        _check_url("MEMBERSHIP_OIDC_ISSUER", issuer)
        client_id = env.get("MEMBERSHIP_OIDC_CLIENT_ID", "").strip()
        if not client_id:
            raise ConfigurationError("MEMBERSHIP_OIDC_CLIENT_ID is required with MEMBERSHIP_OIDC_ISSUER")
        return cls(issuer, client_id, env.get("MEMBERSHIP_OIDC_CLIENT_SECRET", ""))

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


@dataclass(frozen=True)
class Settings:
    """Every knob of the service, with production-sensible defaults."""

    database: Database
    secret_key: bytes = field(repr=False)
    tokens: TokenVerification | None = None
    public_url: str = "http://127.0.0.1:8000"
    public_url_given: bool = False  # MEMBERSHIP_PUBLIC_URL set; else `membership serve` uses where it listens
    listen_host: str | None = None  # the address `membership serve` binds (None in workers and tools)
    oidc: OpenIdProvider | None = None
    session_lifetime_s: int = 12 * 3600  # a browser session's lifetime (signed cookie)
    cors_origins: tuple[str, ...] = ()  # origins whose front-ends may call the API (none by default)
    snapshot_interval: int = 500
    cache_size: int = 100
    max_pending_invitations: int = 1000
    invites_per_hour: int = 100
    organizations_per_hour: int = 10
    accept_failures: int = 10  # failed accepts (bad token or code) per user per window, then 429
    accept_failure_window_s: int = 600
    smtp: Smtp = field(default_factory=Smtp)
    event_cipher_key: str = field(default="", repr=False)  # AES-GCM key (base64) for events and snapshots
    event_compression: bool = False  # zlib before encryption
    # The master key of personal data (membership.personal_data): MEMBERSHIP_DATA_KEY, or derived from the
    # secret key; and retired ones, which still unwrap keys a rotation has not re-wrapped yet.
    data_key: bytes = field(default=b"", repr=False)
    data_keys_retired: tuple[bytes, ...] = field(default=(), repr=False)
    operator_token: str = field(default="", repr=False)  # the operators' API (`/api/operator/...`); none: off

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        database = Database.from_url(env.get("MEMBERSHIP_DATABASE_URL") or DEFAULT_DATABASE_URL)
        if env.get("MEMBERSHIP_VAR_DIR"):
            database = replace(database, local_dir=Path(env["MEMBERSHIP_VAR_DIR"]))
        oidc = OpenIdProvider.from_env(env)
        return cls(
            database=database,
            secret_key=_secret_key(env.get("MEMBERSHIP_SECRET_KEY", ""), database),
            tokens=TokenVerification.from_env(env, database, oidc),
            public_url=_public_url(env),
            public_url_given=bool(env.get("MEMBERSHIP_PUBLIC_URL")),
            oidc=oidc,
            session_lifetime_s=_positive_int(env, "MEMBERSHIP_SESSION_HOURS", 12) * 3600,
            cors_origins=_origins(env.get("MEMBERSHIP_CORS_ORIGINS", "")),
            invites_per_hour=_positive_int(env, "MEMBERSHIP_INVITES_PER_HOUR", 100),
            organizations_per_hour=_positive_int(env, "MEMBERSHIP_ORGANIZATIONS_PER_HOUR", 10),
            accept_failures=_positive_int(env, "MEMBERSHIP_ACCEPT_FAILURES", 10),
            accept_failure_window_s=_positive_int(env, "MEMBERSHIP_ACCEPT_FAILURE_WINDOW_SECONDS", 600),
            smtp=Smtp.from_env(env),
            snapshot_interval=_positive_int(env, "MEMBERSHIP_SNAPSHOT_INTERVAL", 500),
            cache_size=_positive_int(env, "MEMBERSHIP_CACHE_SIZE", 100),
            max_pending_invitations=_positive_int(env, "MEMBERSHIP_MAX_PENDING_INVITATIONS", 1000),
            event_cipher_key=_cipher_key(env.get("MEMBERSHIP_EVENT_CIPHER_KEY", "")),
            event_compression=_compression(env.get("MEMBERSHIP_EVENT_COMPRESSION", "")),
            data_key=_data_key(env.get("MEMBERSHIP_DATA_KEY", ""), "MEMBERSHIP_DATA_KEY"),
            operator_token=_operator_token(env.get("MEMBERSHIP_OPERATOR_TOKEN", "")),
            data_keys_retired=tuple(
                _data_key(key, "MEMBERSHIP_DATA_KEYS_RETIRED")
                for key in env.get("MEMBERSHIP_DATA_KEYS_RETIRED", "").replace(",", " ").split()
            ),
        )

    def served_at(self, host: str, port: int) -> Settings:
        """These settings for `membership serve` listening on host:port: links point there unless
        MEMBERSHIP_PUBLIC_URL says otherwise."""
        public_url = self.public_url if self.public_url_given else f"http://{_url_host(host)}:{port}"
        return replace(self, listen_host=host, public_url=public_url)

    @property
    def development_sign_in(self) -> bool:
        """The development sign-in form: only without an identity provider, and only when the server listens
        on loopback alone (nobody else can reach it)."""
        return self.oidc is None and self.listen_host is not None and _is_loopback(self.listen_host)

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def eventsourcing_env(self) -> dict[str, str]:
        """The event store's settings, every one of them said here: none is taken from the process environment
        by accident (the library would read CIPHER_TOPIC or COMPRESSOR_TOPIC there)."""
        return {
            **self.database.eventsourcing_env(),
            "AGGREGATE_CACHE_MAXSIZE": str(self.cache_size),
            "CIPHER_TOPIC": CIPHER_TOPIC if self.event_cipher_key else "",
            "CIPHER_KEY": self.event_cipher_key,
            "COMPRESSOR_TOPIC": COMPRESSOR_TOPIC if self.event_compression else "",
        }

    def master_keys(self) -> MasterKeys:
        """The keys that wrap each person's key. Without MEMBERSHIP_DATA_KEY the master key is derived from the
        secret key; once one is set, that derived key is kept as a retired one (`membership privacy
        rotate-key` then re-wraps what it wrapped)."""
        derived = hashlib.sha256(b"membership personal data master key\0" + self.secret_key).digest()
        if not self.data_key:
            return MasterKeys(derived, self.data_keys_retired)
        return MasterKeys(self.data_key, (*self.data_keys_retired, derived))

    def token_verification(self) -> TokenVerification:
        """What the API needs to authenticate requests; a clear error when it is not configured."""
        if self.tokens is None:
            raise ConfigurationError(
                "set MEMBERSHIP_OIDC_ISSUER (tokens of your identity provider), MEMBERSHIP_JWT_JWKS_URL, "
                "MEMBERSHIP_JWT_SECRET (HS256) or MEMBERSHIP_JWT_PUBLIC_KEY_FILE (RS256)"
            )
        return self.tokens


CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"  # AES-GCM, from the `cryptography` package
COMPRESSOR_TOPIC = "eventsourcing.compressor:ZlibCompressor"


def _cipher_key(key: str) -> str:
    """MEMBERSHIP_EVENT_CIPHER_KEY: 16, 24 or 32 random bytes in base64 (`openssl rand -base64 32`)."""
    if not key:
        return ""
    try:
        size = len(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        size = 0
    if size not in (16, 24, 32):
        raise ConfigurationError(
            "MEMBERSHIP_EVENT_CIPHER_KEY must be 16, 24 or 32 random bytes in base64: make one with"
            " `openssl rand -base64 32`"
        )
    return key


def _data_key(key: str, name: str) -> bytes:
    """A master key for personal data: 32 random bytes in base64 (`openssl rand -base64 32`)."""
    if not key:
        return b""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(f"{name} must be 32 random bytes in base64: make one with `openssl rand -base64 32`")
    return raw


def _operator_token(token: str) -> str:
    """MEMBERSHIP_OPERATOR_TOKEN: the bearer secret of the operators' API, at least 32 characters."""
    if token and len(token) < 32:
        raise ConfigurationError("MEMBERSHIP_OPERATOR_TOKEN must have at least 32 characters")
    return token


def _compression(value: str) -> bool:
    """MEMBERSHIP_EVENT_COMPRESSION: `zlib`, or `none` (the default)."""
    if value.lower() not in ("", "none", "zlib"):
        raise ConfigurationError(f"MEMBERSHIP_EVENT_COMPRESSION must be zlib or none, not {value!r}")
    return value.lower() == "zlib"


def _public_url(env: Mapping[str, str]) -> str:
    url = (env.get("MEMBERSHIP_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")
    _check_url("MEMBERSHIP_PUBLIC_URL", url)
    return url


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must be an http(s) URL without query or fragment, not {url!r}")


def _origins(raw: str) -> tuple[str, ...]:
    """MEMBERSHIP_CORS_ORIGINS: comma-separated origins (scheme://host[:port]), exactly as browsers send them."""
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ConfigurationError(f"MEMBERSHIP_CORS_ORIGINS: {origin!r} is not an origin like https://app.example")
    return origins


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """The host part of a URL to a server bound to `host` (a wildcard address becomes this machine's name)."""
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 (naming the wildcard, not binding to it)
        return socket.gethostname()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a positive whole number, not {raw!r}")
    return int(raw)


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, not {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")


def _secret_key(raw: str, database: Database) -> bytes:
    """MEMBERSHIP_SECRET_KEY, or on the embedded SQLite default a generated one kept in var/."""
    if raw:
        if len(raw) < 32:
            raise ConfigurationError("MEMBERSHIP_SECRET_KEY must have at least 32 characters")
        return raw.encode()
    if database.backend != "sqlite":
        raise ConfigurationError(
            "MEMBERSHIP_SECRET_KEY is required with PostgreSQL (every process must share it); "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    return _local_secret_key(database.var_dir / SECRET_KEY_FILE)


def _local_secret_key(path: Path) -> bytes:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip().encode()
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()
    except OSError as error:
        raise ConfigurationError(f"cannot keep the development secret key at {str(path)!r}: {error}") from None
