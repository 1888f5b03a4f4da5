"""Every list endpoint pages like `/api/members`, on SQLite and PostgreSQL.

`limit` 1-200 (default 50), an opaque `cursor`, `nextCursor` in the answer (null on
the last page), `total` for the whole list; walking the pages gives every item once,
in the list's order; a cursor the API did not make is 400 `invalid_cursor`.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.engine.reading import encode_cursor
from tests.e2e.conftest import BOTH_STORES, ApiClient, User, problem

pytestmark = BOTH_STORES  # the store can change the outcome (see tests/e2e/conftest.py)

SYSTEM_ROLES = ["Owner", "Admin", "Developer", "Viewer"]


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
def test_roles_page_system_roles_first_then_custom_roles_by_creation(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    custom = [create_role(api, owner, org, name) for name in ("Zeta", "alpha", "Mid", "Beta", "omega")]
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


def test_invite_links_page_newest_first_without_deleted_ones(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    viewer = api.role_id(org, "Viewer", owner)
    made = [api.post("/api/invite-links", owner, org, json={"roleId": viewer}).json["id"] for _ in range(6)]
    assert api.delete(f"/api/invite-links/{made[2]}", owner, org).status_code == 200
    expected = [link for link in reversed(made) if link != made[2]]

    assert_pages_walk_the_whole_list(api, "/api/invite-links", "inviteLinks", owner, org, expected)
    links = walk(api, "/api/invite-links", "inviteLinks", owner, org, 2)
    assert all(link["code"] and link["url"].endswith(link["code"]) for link in links)


def test_organizations_page_oldest_first(api: ApiClient) -> None:
    founder = api.user("founder")
    made = [api.new_org(founder, f"Org {n}") for n in range(5)]

    assert_pages_walk_the_whole_list(api, "/api/organizations", "organizations", founder, None, made)


def test_jobs_page_newest_first(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    made = []
    for _ in range(5):
        started = api.post("/api/members/bulk/remove", owner, org, json={"memberIds": [str(uuid.uuid4())]})
        assert started.status_code == 202, started.json
        made.append(started.json["job"]["id"])

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
}


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
    for n in range(47):
        create_role(api, owner, org, f"Role {n}")

    first = api.get("/api/roles", owner, org).json

    assert (len(first["roles"]), first["total"]) == (50, 51) and first["nextCursor"]
    assert len(api.get("/api/roles", owner, org, query_string={"cursor": first["nextCursor"]}).json["roles"]) == 1


# -- a property: any roles, any page sizes ------------------------------------------------------------------------
def create_role(api: ApiClient, owner: User, org: str, name: str) -> str:
    response = api.post("/api/roles", owner, org, json={"name": name, "permissionIds": []})
    assert response.status_code == 201, response.json
    return str(response.json["id"])


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
    org = api.new_org(owner)
    custom = [create_role(api, owner, org, name) for name in names]
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
