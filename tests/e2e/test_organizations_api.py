"""`/api/organizations/{id}`: read, rename (manage:settings) and delete (Owner only) an organization.

Deletion also runs on PostgreSQL: the read models drop the organization's rows in statements of their own.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from membership.organization import system_role_id
from projections import audit as audit_reads
from projections import invitations as invitation_reads
from projections import members as members_reads
from projections import roles as roles_reads
from tests.e2e.conftest import BOTH_STORES, ApiClient, problem


def path(org: str) -> str:
    return f"/api/organizations/{org}"


def test_a_member_reads_the_organization_the_path_names(api: ApiClient) -> None:
    owner, stranger = api.user("owner"), api.user("stranger")
    org = api.new_org(owner, "Acme")
    viewer = api.join(org, owner, "Viewer", "viewer")

    response = api.get(path(org), viewer)

    assert response.status_code == 200
    assert (response.json["id"], response.json["name"]) == (org, "Acme")
    problem(api.get(path(org), stranger), 403, "not_a_member")
    other = api.new_org(stranger, "Other")
    # The path names the organization; a header naming another one does not change that.
    problem(api.get(path(org), stranger, other), 403, "not_a_member")


def test_rename_needs_manage_settings_and_shows_everywhere(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Acme")
    admin, viewer = api.join(org, owner, "Admin", "admin"), api.join(org, owner, "Viewer", "viewer")

    problem(api.patch(path(org), viewer, json={"name": "Viewer's"}), 403, "missing_permission")
    renamed = api.patch(path(org), admin, json={"name": "  Acme   Corp "})

    assert renamed.status_code == 200 and renamed.json["name"] == "Acme Corp"
    listed = api.get("/api/organizations", viewer).json["organizations"]
    assert [o["name"] for o in listed] == ["Acme Corp"]
    entry = api.get("/api/audit-log", owner, org, query_string={"type": "OrganizationRenamed"}).json["events"][0]
    assert entry["actor"]["email"] == admin.email
    assert entry["target"] == {"type": "organization", "id": org, "label": "Acme Corp"}
    assert (entry["details"]["oldName"], entry["details"]["name"]) == ("Acme", "Acme Corp")


def test_renaming_to_the_same_name_records_nothing(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Acme")
    assert api.patch(path(org), owner, json={"name": "Acme"}).status_code == 200
    types = [e["type"] for e in api.get("/api/audit-log", owner, org).json["events"]]
    assert "OrganizationRenamed" not in types


@pytest.mark.parametrize(
    "body, field",
    [({"name": ""}, "name"), ({"name": "a\u0000b"}, "name"), ({"name": "x" * 201}, "name"), ({}, "name"),
     ({"name": "Fine", "owner": "me"}, "owner"), ({"name": 7}, "name")],
)  # fmt: skip
def test_rename_refuses_bad_input_naming_the_field(api: ApiClient, body: dict[str, object], field: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Acme")
    refused = problem(api.patch(path(org), owner, json=body), 422, "validation_failed")
    assert field in str(refused), refused
    assert api.get(path(org), owner).json["name"] == "Acme"


@pytest.mark.parametrize("role", ["Admin", "Developer", "Viewer"])
def test_only_the_owner_deletes_the_organization(api: ApiClient, role: str) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    member = api.join(org, owner, role, role.lower())
    problem(api.delete(path(org), member), 403, "owner_only")
    assert api.get(path(org), member).status_code == 200


@BOTH_STORES
def test_after_deletion_no_one_has_access_and_nothing_leads_in(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Doomed")
    kept = api.new_org(owner, "Kept")
    admin = api.join(org, owner, "Admin", "admin")
    invited = api.user("invitee")
    invitation = api.post(
        "/api/members/invite", owner, org, json={"email": invited.email, "roleId": api.role_id(org, "Viewer", owner)}
    ).json
    link = api.post("/api/invite-links", owner, org, json={"roleId": api.role_id(org, "Viewer", owner)}).json
    token = api.invitation_token(org, invitation["id"])

    assert api.delete(path(org), owner).json == {"message": "The organization was deleted."}

    for user in (owner, admin):
        problem(api.get(path(org), user), 403, "not_a_member")
        problem(api.get("/api/members", user, org), 403, "not_a_member")
        problem(api.patch(path(org), user, json={"name": "Back"}), 403, "not_a_member")
    assert [o["id"] for o in api.get("/api/organizations", owner).json["organizations"]] == [kept]
    assert api.get("/api/organizations", admin).json["organizations"] == []
    problem(api.post("/api/auth/accept-invite", invited, json={"token": token}), 410, "organization_deleted")
    problem(api.get("/api/invitations/preview", query_string={"token": token}), 410, "organization_deleted")
    problem(api.post("/api/auth/accept-invite-link", invited, json={"code": link["code"]}), 410, "organization_deleted")
    problem(api.delete(path(org), owner), 403, "not_a_member")
    assert api.get("/api/members", owner, kept).status_code == 200


@BOTH_STORES
def test_deletion_empties_the_read_models_and_is_audited(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner, "Doomed")
    kept = api.new_org(owner, "Kept")
    api.join(org, owner, "Developer", "dev")
    api.post("/api/roles", owner, org, json={"name": "QA", "description": "", "permissionIds": ["view:members"]})
    api.post("/api/invite-links", owner, org, json={"roleId": api.role_id(org, "Viewer", owner)})
    api.post(
        "/api/members/invite", owner, org, json={"email": "x@example.com", "roleId": api.role_id(org, "QA", owner)}
    )

    assert api.delete(path(org), owner).json == {"message": "The organization was deleted."}

    db, org_id = api.services.read_db, UUID(org)
    assert members_reads.get_organization(db, org_id) is None
    assert members_reads.list_members(db, org_id).total == 0
    assert roles_reads.list_roles(db, org_id) == []
    for status in ("pending", "accepted", "cancelled"):
        assert invitation_reads.list_invitations(db, org_id, api.clock(), status).total == 0
    assert invitation_reads.list_invite_links(db, org_id).items == []
    assert members_reads.list_members(db, UUID(kept)).total == 1
    assert roles_reads.get_role(db, UUID(kept), system_role_id(UUID(kept), "owner")) is not None
    last = next(audit_reads.iter_audit(db, org_id, event_type="OrganizationDeleted"))
    assert (last.actor_email, last.target_label) == (owner.email, "Doomed")
