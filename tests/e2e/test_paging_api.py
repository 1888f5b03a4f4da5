"""Every list endpoint pages like `/api/members`.

`limit` 1-200 (default 50), an opaque `cursor`, `nextCursor` in the answer (null on
the last page), `total` for the whole list; walking the pages gives every item once,
in the list's order; a cursor the API did not make is 400 `invalid_cursor`.

Walking each list's pages runs on SQLite and PostgreSQL: each step is a keyset query over
the store's timestamps and ids (BOTH_STORES). The rest runs on SQLite: the default and the
bounds of `limit` and the shape of a page are HTTP concerns, and a forged cursor is
refused before any query is made. The lists are filled in-process through the application
(what is listed is under test here, not the commands that made it), then read over HTTP.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from membership.jobs import REMOVAL
from membership.organization import system_role_id
from projections.engine.reading import encode_cursor
from tests.e2e.conftest import BOTH_STORES, ApiClient, User, problem

SYSTEM_ROLES = ["Owner", "Admin", "Developer", "Viewer"]


def create_roles(api: ApiClient, owner: User, org: str, names: list[str]) -> list[str]:
    """Custom roles, made in this order; their ids."""
    app = api.services.organizations
    made = [str(app.create_role(UUID(org), owner, name, "", []).id) for name in names]
    api.caught_up()
    return made


def walk(api: ApiClient, path: str, key: str, user: User, org: str | None, limit: int) -> list[dict[str, Any]]:
    """Every item, following nextCursor `limit` at a time; each page is full but the last."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = api.get(path, user, org, query_string=query)
        assert response.status_code == 200, response.json
        page = response.json
        items += page[key]
        assert len(items) <= page["total"], "a page repeats items"  # rather than walking on for ever
        cursor = page["nextCursor"]
        if cursor is None:
            assert len(page[key]) <= limit and page["total"] == len(items)
            return items
        assert len(page[key]) == limit


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def assert_pages_walk_the_whole_list(
    api: ApiClient, path: str, key: str, user: User, org: str | None, expected: list[str]
) -> None:
    everything = api.get(path, user, org, query_string={"limit": 200}).json
    assert everything["nextCursor"] is None and everything["total"] == len(expected)
    assert ids(everything[key]) == expected
    for limit in (1, 2, 3, len(expected)):
        assert ids(walk(api, path, key, user, org, limit)) == expected


# -- each list, walked page by page -------------------------------------------------------------------------------
@BOTH_STORES
def test_roles_page_system_roles_first_then_custom_roles_by_creation(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    custom = create_roles(api, owner, org, ["Zeta", "alpha", "Mid", "Beta", "omega"])
    system = ids(api.get("/api/roles", owner, org, query_string={"limit": 4}).json["roles"])

    assert_pages_walk_the_whole_list(api, "/api/roles", "roles", owner, org, system + custom)
    names = [r["name"] for r in walk(api, "/api/roles", "roles", owner, org, 3)]
    assert names == [*SYSTEM_ROLES, "Zeta", "alpha", "Mid", "Beta", "omega"]


def test_a_page_of_roles_keeps_member_counts(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    api.join(org, owner, "Developer", "dev")

    first = api.get("/api/roles", owner, org, query_string={"limit": 3}).json

    assert [(r["name"], r["memberCount"]) for r in first["roles"]] == [("Owner", 1), ("Admin", 0), ("Developer", 1)]
    assert first["total"] == 4 and first["nextCursor"]


@BOTH_STORES
def test_invite_links_page_newest_first_without_deleted_ones(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    app, org_id = api.services.organizations, UUID(org)
    made = [str(app.create_invite_link(org_id, owner, system_role_id(org_id, "viewer")).id) for _ in range(6)]
    app.delete_invite_link(org_id, owner, UUID(made[2]))
    api.caught_up()
    expected = [link for link in reversed(made) if link != made[2]]

    assert_pages_walk_the_whole_list(api, "/api/invite-links", "inviteLinks", owner, org, expected)
    links = walk(api, "/api/invite-links", "inviteLinks", owner, org, 2)
    assert all(link["code"] and link["url"].endswith(link["code"]) for link in links)


@BOTH_STORES
def test_organizations_page_oldest_first(api: ApiClient) -> None:
    founder = api.user("founder")
    app = api.services.organizations
    made = [str(app.create_organization(founder, f"Org {n}").organization_id) for n in range(5)]
    api.caught_up()

    assert_pages_walk_the_whole_list(api, "/api/organizations", "organizations", founder, None, made)


@BOTH_STORES
def test_jobs_page_newest_first(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    app = api.services.organizations
    made = [str(app.request_bulk_job(UUID(org), owner, REMOVAL, [uuid4()])[0].id) for _ in range(5)]
    api.caught_up()

    assert_pages_walk_the_whole_list(api, "/api/jobs", "jobs", owner, org, list(reversed(made)))


# -- the shared rules ---------------------------------------------------------------------------------------------
LISTS = {
    "/api/members": "members",
    "/api/invitations": "invitations",
    "/api/invite-links": "inviteLinks",
    "/api/roles": "roles",
    "/api/organizations": "organizations",
    "/api/jobs": "jobs",
}
FORGED = {
    "not base64": "%%%",
    "not json": "bm90IGpzb24",
    "too few values": encode_cursor("x"),
    "too many values": encode_cursor(1, "2030-01-01T00:00:00+00:00", "x", "y"),
    "not a time": encode_cursor("yesterday", "x"),
    "a number for an id": encode_cursor("2030-01-01T00:00:00+00:00", 5),
    "a time out of range": encode_cursor("9999-12-31T23:59:59-14:00", "x"),
    "a time without a zone": encode_cursor("2030-01-01T00:00:00", "x"),
    "a bool for a rank": encode_cursor(True, "2030-01-01T00:00:00+00:00", "x"),
    "an object": encode_cursor({"a": 1}, "x"),
    "a NUL in an id": encode_cursor("2030-01-01T00:00:00+00:00", "x\x00y"),  # PostgreSQL refused it: a 500
    "a lone surrogate in an id": encode_cursor("2030-01-01T00:00:00+00:00", "x\udfffy"),
}


@BOTH_STORES  # a value the store refuses must be refused before it reaches the store
@pytest.mark.parametrize("path", LISTS)
def test_a_forged_cursor_is_400_invalid_cursor(api: ApiClient, path: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    foreign = api.get("/api/roles", owner, org, query_string={"limit": 1}).json["nextCursor"]

    for cursor in [*FORGED.values(), foreign] if path != "/api/roles" else FORGED.values():
        problem(api.get(path, owner, org, query_string={"cursor": cursor}), 400, "invalid_cursor")


@pytest.mark.parametrize("path", LISTS)
def test_a_limit_out_of_1_to_200_is_422(api: ApiClient, path: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    for limit in ("0", "201", "many"):
        problem(api.get(path, owner, org, query_string={"limit": limit}), 422, "validation_failed")


@pytest.mark.parametrize("path", LISTS)
def test_the_default_page_is_50_with_total_and_next_cursor(api: ApiClient, path: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)

    page = api.get(path, owner, org).json

    assert {LISTS[path], "total", "nextCursor"} <= set(page) and page["nextCursor"] is None


def test_the_default_page_size_is_50(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    create_roles(api, owner, org, [f"Role {n}" for n in range(47)])  # and the 4 system roles: 51

    first = api.get("/api/roles", owner, org).json

    assert (len(first["roles"]), first["total"]) == (50, 51) and first["nextCursor"]
    assert len(api.get("/api/roles", owner, org, query_string={"cursor": first["nextCursor"]}).json["roles"]) == 1


# -- a property: any roles, any page sizes ------------------------------------------------------------------------
# On SQLite: the store does the same keyset step whatever the names and page sizes, and that step (over the
# rank, the system/custom boundary and creation times) is walked on both stores by the roles test above.
ROLE_NAMES = st.lists(
    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12),
    max_size=7,
    unique_by=lambda name: name.casefold(),
).filter(lambda names: not {n.casefold() for n in names} & {n.casefold() for n in SYSTEM_ROLES})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=ROLE_NAMES, limits=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_walking_roles_with_any_page_sizes_gives_the_whole_ordered_list(
    api: ApiClient, names: list[str], limits: list[int]
) -> None:
    owner = api.user("owner")
    org = str(api.services.organizations.create_organization(owner, "Acme").organization_id)
    custom = create_roles(api, owner, org, names)
    sizes = [limits[n % len(limits)] for n in range(len(names) + 4)]  # page n holds at most sizes[n] roles
    walked: list[list[dict[str, Any]]] = []
    cursor = None

    while True:
        query: dict[str, Any] = {"limit": sizes[len(walked)]} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/roles", owner, org, query_string=query).json
        walked.append(page["roles"])
        if (cursor := page["nextCursor"]) is None:
            break

    roles = [role for page in walked for role in page]
    assert [r["name"] for r in roles[:4]] == SYSTEM_ROLES
    assert ids(roles[4:]) == custom
    last = len(walked) - 1
    assert [len(page) for page in walked] == [*sizes[:last], len(walked[last])] and 0 < len(walked[last]) <= sizes[last]
