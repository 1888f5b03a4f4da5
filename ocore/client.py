"""A small HTTP client for the membership REST API.

Sends the bearer token and the `X-Organization-Id` header, speaks JSON, and
turns every problem-details answer into an `ApiError` whose exit code says
what kind of failure it was (see `ERRORS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any
from uuid import UUID

import click
import requests

TIMEOUT_S = 30.0
MAX_PAGE = 200  # the API's largest page


class ApiError(click.ClickException):
    """A failure shown as one `ocore: ...` line on stderr; the subclass decides the exit code."""

    exit_code = 1  # 400, 422, 429, 5xx, no connection...

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"ocore: {self.format_message()}", err=True)


class SettingMissingError(ApiError):
    """No organization configured: a usage problem, found before any request."""

    exit_code = 2


class AuthenticationError(ApiError):
    exit_code = 3


class PermissionDeniedError(ApiError):
    exit_code = 4


class NotFoundError(ApiError):
    exit_code = 5


class ConflictError(ApiError):
    """409 conflicts and 410 gone (expired, cancelled or used-up invitations and links)."""

    exit_code = 6


class WatchInterruptedError(ApiError):
    """Ctrl-C while watching a job (which goes on on the server)."""

    exit_code = 130


ERRORS = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: ConflictError,
}


def problem_error(response: requests.Response) -> ApiError:
    """The error for a non-2xx answer: the problem's `detail`, with field errors when the server gave some."""
    error_class = ERRORS.get(response.status_code, ApiError)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "detail" not in body:
        return error_class(f"HTTP {response.status_code} {response.reason} from {response.url}", response.status_code)
    message = " ".join(str(body["detail"]).split())
    if isinstance(body.get("errors"), dict):
        fields = "; ".join(f"{name}: {' '.join(map(str, _listed(v)))}" for name, v in body["errors"].items())
        message = f"{message} ({fields})"
    if response.headers.get("Retry-After"):
        message = f"{message} (retry after {response.headers['Retry-After']} s)"
    return error_class(message, response.status_code, body.get("code"))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class Client:
    """The API at `base_url`, called as the holder of `token`, within organization `org`."""

    def __init__(self, base_url: str, token: str | None = None, org: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token, self.org = token, org
        self.session = requests.Session()

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, scoped: bool = True,
    ) -> Any:  # fmt: skip
        """The decoded JSON answer of one call; `scoped` calls need an organization."""
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(
                method, url, json=body, params=params, headers=self._headers(scoped, headers), timeout=TIMEOUT_S
            )
        except requests.ConnectionError as error:
            raise ApiError(f"cannot connect to {self.base_url}/ ({_reason(error)})") from None
        except requests.RequestException as error:
            raise ApiError(f"request to {url} failed: {error}") from None
        if not response.ok:
            raise problem_error(response)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise ApiError(f"{url} answered {response.status_code} with a body that is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        """GET with query parameters (None values are left out)."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def pages(self, path: str, *, follow: bool, scoped: bool = True, **params: Any) -> Iterator[dict[str, Any]]:
        """Each page of a cursor-paginated list; with `follow`, until `nextCursor` runs out."""
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self.request("GET", path, params=params, scoped=scoped)
            yield page
            if not follow or not page.get("nextCursor"):
                return
            params["cursor"] = page["nextCursor"]

    def every(self, path: str, key: str, *, scoped: bool = True) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, fetched in the largest pages."""
        for page in self.pages(path, follow=True, scoped=scoped, limit=MAX_PAGE):
            yield from page[key]

    def resolve_role(self, role: str) -> str:
        """A role id from an id or a (case-insensitive) name, via GET /api/roles."""
        if _is_uuid(role):
            return role
        roles = list(self.every("/api/roles", "roles"))
        match = next((r for r in roles if r["name"].casefold() == role.casefold()), None)
        if match is None:
            names = ", ".join(r["name"] for r in roles)
            raise NotFoundError(f"no role {role!r} in this organization (roles: {names})", 404)
        return str(match["id"])

    def resolve_member(self, member: str) -> str:
        """A member id from an id or an e-mail address, via GET /api/members?q=."""
        if _is_uuid(member):
            return member
        if "@" not in member:
            raise click.UsageError(f"{member!r} is neither a member id (a UUID) nor an e-mail address")
        found = self.get("/api/members", q=member, limit=200)["members"]
        match = next((m for m in found if m["email"].casefold() == member.casefold()), None)
        if match is None:
            raise NotFoundError(f"no member with e-mail {member!r} in this organization", 404)
        return str(match["id"])

    def _headers(self, scoped: bool, extra: dict[str, str] | None) -> dict[str, str]:
        if not self.token:
            raise AuthenticationError("no token: pass --token, set OCORE_TOKEN, or run `ocore login --token ...`")
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **(extra or {})}
        if scoped:
            if not self.org:
                raise SettingMissingError("no organization: pass --org, set OCORE_ORG, or run `ocore login --org ...`")
            headers["X-Organization-Id"] = self.org
        return headers


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _reason(error: requests.ConnectionError) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused; is the server running?"
    if "resolve" in text.lower() or "name or service" in text.lower():
        return "unknown host"
    return "no answer"
