"""Schemathesis against the whole stack, on PostgreSQL (the production store, and the stricter one about
text): the API answers as its OpenAPI document says.

Requests are generated from /api/openapi.json, valid and invalid, in every phase of
`schemathesis run` (coverage, fuzzing, stateful), and sent over HTTP to the real app with
its projections running, as the Owner of a real organization. Every default check runs:
no 5xx; every status, media type, body and header documented; valid data accepted and
invalid data refused with a 4xx; authentication enforced; 405 for undeclared methods;
deleted things gone.

The engine is driven as the `schemathesis run` command drives it, against a loopback
server in this process (Schemathesis 4.32: the pytest integration's `from_fixture` fails
under pytest 9, and the WSGI transport cannot send the `ignored_auth` check's probes).
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from flask import Flask
from schemathesis.engine import Status, events, from_schema
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.openapi.checks import RejectedPositiveData
from werkzeug.serving import WSGIRequestHandler, make_server

from service.settings import Settings
from tests.e2e.conftest import JWT_SECRET, POSTGRES_ONLY, ApiClient, problem

pytestmark = POSTGRES_ONLY
# Fuzzing examples per operation: the coverage phase (most of the ~1,700 cases) and the stateful phase add
# their own. MEMBERSHIP_SCHEMATHESIS_EXAMPLES=100 searches deeper.
MAX_EXAMPLES = int(os.environ.get("MEMBERSHIP_SCHEMATHESIS_EXAMPLES", "3"))
SEED = 20_251_128
# A refusal is a 4xx (Schemathesis' defaults also allow 5xx here, leaving those to not_a_server_error).
REFUSED = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
# Valid data may still meet state: a missing or deleted thing, a conflict, a limit (the defaults, plus 410 gone).
ACCEPTED = ["2xx", "401", "403", "404", "409", "410", "429"]


@dataclass
class Run:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@pytest.fixture
def api_settings(store: str, settings_for: Callable[..., Settings]) -> Settings:
    """Limits high enough that generated requests reach the domain rather than a 429."""
    return settings_for(
        store,
        MEMBERSHIP_JWT_SECRET=JWT_SECRET,
        MEMBERSHIP_PUBLIC_URL="https://ocore.example.com",
        MEMBERSHIP_ORGANIZATIONS_PER_HOUR="100000",
        MEMBERSHIP_INVITES_PER_HOUR="100000",
        MEMBERSHIP_ACCEPT_FAILURES="100000",
    )


# The operations in two halves that xdist runs side by side (one run of all took twice as long); each half
# keeps the operations its stateful phase links together (create, then read, change or delete it).
HALVES = {
    "members, jobs and operators": r"^/api/(members|jobs|me|permissions|health|operator)",
    "roles, invitations, links, organizations, audit and accepting": (
        r"^/api/(roles|invitations|invite-links|organizations|audit-log|access-review|auth)"
    ),
}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
@pytest.mark.parametrize("half", HALVES)
def test_every_answer_to_an_owner_conforms_to_the_openapi_document(api: ApiClient, half: str) -> None:
    owner = api.user("owner")
    organization = api.new_org(owner)
    with serving(api.client.application) as base, unique_idempotency_keys():
        run = schemathesis_run(base, api.token(owner), organization, HALVES[half])
    assert not run.failures, "\n\n".join(run.failures)
    assert not [status for status in run.statuses if status >= 500], run.statuses
    assert run.cases > 500 and sum(n for status, n in run.statuses.items() if status < 300) > 50, run.statuses


def test_the_halves_cover_every_operation(api: ApiClient) -> None:
    paths = api.get("/api/openapi.json").json["paths"]
    assert [path for path in paths if not any(re.match(pattern, path) for pattern in HALVES.values())] == []


def schemathesis_run(base: str, token: str, organization: str, path_regex: str) -> Run:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "auth": {"openapi": {"bearerAuth": {"bearer": token}}},
            "parameters": {"header.X-Organization-Id": organization},
            "checks": {
                "negative_data_rejection": {"expected-statuses": REFUSED},
                "positive_data_acceptance": {"expected-statuses": ACCEPTED},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json", config=config).include(path_regex=path_regex)
    schema.hook("filter_failure")(_not_a_cursor_the_api_made)
    run = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            _record(run, event.recorder)
        elif isinstance(event, events.NonFatalError):
            run.failures.append(f"error in {event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            run.failures.append(f"fatal error: {event.exception!r}")
    return run


def _not_a_cursor_the_api_made(context: Any, failure: Any, case: schemathesis.Case, response: Any) -> bool:
    """Keeps every failure but one: a cursor's form is declared, not its meaning, so a well-formed cursor
    the API did not make is refused (400 `invalid_cursor`, as documented) although it matches the schema."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    return bool(response.json().get("code") != "invalid_cursor")


def _record(run: Run, recorder: Any) -> None:
    run.cases += len(recorder.cases)
    for interaction in recorder.interactions.values():
        if interaction.response is not None:
            run.statuses[interaction.response.status_code] += 1
    for checks in recorder.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                run.failures.append(f"{check.name} {failure.operation}: {failure.title}\n{failure.message}\n"
                                    f"{check.failure_info.code_sample}")  # fmt: skip


class QuietHandler(WSGIRequestHandler):
    def log(self, *_: Any) -> None:
        pass  # the app's own access log records each request


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on a loopback port, served by threads of this process (where its projections run too)."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def unique_idempotency_keys() -> Iterator[None]:
    """Each request its own valid Idempotency-Key. Generated keys repeat ("0"), and a key reused for another
    request is answered 409 before anything else is tried; reuse itself is tested in test_idempotency_api."""
    numbers = itertools.count()

    def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and 1 <= len(key) <= 255 and key.isascii() and key.isprintable():
            case.headers["Idempotency-Key"] = f"{next(numbers)}~{key}"[:255]  # type: ignore[index]

    schemathesis.hook("before_call")(before_call)
    try:
        yield
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)


# -- what the first runs found ---------------------------------------------------------------------------------
def test_an_undeclared_method_is_405_with_an_idempotency_key_or_a_body_that_is_not_json(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    assert api.post("/api/members/leave", owner, org, headers={"Idempotency-Key": "k1"}).status_code == 409
    for response in (
        api.put("/api/members/leave", owner, org, headers={"Idempotency-Key": "k1"}),  # was 409: key reused
        api.put("/api/organizations", owner, data="x", content_type="text/plain"),  # was 415
    ):
        assert problem(response, 405, "method_not_allowed") and response.headers["Allow"]


def test_a_cursor_with_a_character_outside_base64url_is_400_invalid_cursor(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    cursor = api.get("/api/roles?limit=1", owner, org).json["nextCursor"]
    assert api.get("/api/roles", owner, org, query_string={"cursor": cursor}).status_code == 200
    for forged in (f"{cursor}=", f"{cursor[:4]}.{cursor[4:]}", f" {cursor}"):  # the decoder used to skip these
        problem(api.get("/api/roles", owner, org, query_string={"cursor": forged}), 400, "invalid_cursor")
