"""The seed documents' team lifecycle, end to end: invite -> accept -> change role -> remove."""

from __future__ import annotations

from tests.e2e.conftest import ApiClient


def test_the_member_lifecycle_from_the_team_management_guide(api: ApiClient) -> None:
    owner = api.user("owner")
    org = api.new_org(owner)
    developer = api.join(org, owner, "Developer", "dev")
    dev_id = api.member_id(org, developer, owner)

    changed = api.put(f"/api/members/{dev_id}/role", owner, org, json={"roleId": api.role_id(org, "Viewer", owner)})
    assert changed.status_code == 200 and changed.json["member"]["role"]["name"] == "Viewer"
    removed = api.delete(f"/api/members/{dev_id}", owner, org)
    assert removed.status_code == 200 and removed.json["message"]

    members = api.get("/api/members", owner, org).json
    assert members["total"] == 1 and [m["userId"] for m in members["members"]] == [owner.user_id]
