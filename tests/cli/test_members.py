"""`ocore member ...`: list (tables, JSON, filters, --all), invite and accept, role changes, removal, ownership."""

from __future__ import annotations

import json

from tests.cli.conftest import Ocore, Server, Team, User


def test_member_list_prints_an_aligned_table_and_the_servers_json(ocore: Ocore, team: Team) -> None:
    result = ocore("member", "list", user=team.owner, org=team.org)
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["ID", "EMAIL", "NAME", "ROLE", "JOINED", "LAST", "ACTIVE"]
    assert team.owner.email in row and "Owner" in row and row.index(team.owner.email) == header.index("EMAIL")

    as_json = json.loads(ocore("member", "list", "--json", user=team.owner, org=team.org).stdout)
    assert set(as_json) == {"members", "total", "nextCursor"} and as_json["total"] == 1
    assert as_json["members"][0]["email"] == team.owner.email and as_json["nextCursor"] is None


def test_member_list_all_follows_next_cursor_through_every_page(ocore: Ocore, team: Team) -> None:
    joined = [team.join(label=f"m{i}")[0] for i in range(6)]  # 7 members with the Owner

    first = ocore("member", "list", "--limit", "2", user=team.owner, org=team.org)
    assert len(first.stdout.splitlines()) == 1 + 2
    assert "showing the first 2 of 7 members; pass --all" in first.stderr

    every = ocore("member", "list", "--limit", "2", "--all", user=team.owner, org=team.org)
    assert len(every.stdout.splitlines()) == 1 + 7 and not every.stderr
    assert all(user.email in every.stdout for user in [team.owner, *joined])

    as_json = json.loads(
        ocore("--json", "member", "list", "--all", "--limit", "3", user=team.owner, org=team.org).stdout
    )
    assert (len(as_json["members"]), as_json["total"], as_json["nextCursor"]) == (7, 7, None)
    assert len({m["id"] for m in as_json["members"]}) == 7


def test_member_list_filters_by_role_name_and_by_search(ocore: Ocore, team: Team) -> None:
    viewer, _ = team.join("Viewer", "watcher")
    team.join("Developer", "builder")
    by_role = json.loads(ocore("member", "list", "--role", "viewer", "--json", user=team.owner, org=team.org).stdout)
    assert [m["email"] for m in by_role["members"]] == [viewer.email]
    found = ocore("member", "list", "--search", "builder", user=team.owner, org=team.org)
    assert "builder." in found.stdout and viewer.email not in found.stdout


def test_invite_with_a_role_name_and_accept_with_the_emailed_token(ocore: Ocore, team: Team, server: Server) -> None:
    invitee = User.new("invitee")
    invited = ocore("member", "invite", "--email", invitee.email, "--role", "developer", "--json",
                    user=team.owner, org=team.org)  # fmt: skip
    assert invited.exit_code == 0, invited.output
    invitation = json.loads(invited.stdout)
    assert (invitation["status"], invitation["role"]["name"]) == ("pending", "Developer")

    token = server.invitation_token(invitation["id"])
    accepted = ocore("invitation", "accept", token, user=invitee)  # no organization needed
    assert accepted.exit_code == 0, accepted.output
    assert f"Joined organization {team.org} as Developer" in accepted.stdout
    assert invitee.email in ocore("member", "list", "--role", "Developer", user=team.owner, org=team.org).stdout


def test_invite_prints_a_sentence_and_honours_expires_in_days(ocore: Ocore, team: Team) -> None:
    invitee = User.new("later")
    result = ocore("member", "invite", "--email", invitee.email, "--role", "Viewer", "--expires-in-days", "2",
                   user=team.owner, org=team.org)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Invited {invitee.email} as Viewer: invitation ")


def test_update_role_by_member_id_or_email_with_a_role_name_or_id(ocore: Ocore, team: Team) -> None:
    user, member_id = team.join("Viewer")
    result = ocore("member", "update-role", member_id, "--role", "ADMIN", user=team.owner, org=team.org)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{user.email} is now Admin."
    developer = next(r["id"] for r in team.api("GET", "/api/roles")["roles"] if r["name"] == "Developer")
    changed = ocore("member", "update-role", user.email, "--role", developer, "--json", user=team.owner, org=team.org)
    assert json.loads(changed.stdout)["member"]["role"]["name"] == "Developer"


def test_remove_a_member_takes_their_access_away(ocore: Ocore, team: Team) -> None:
    user, member_id = team.join()
    result = ocore("member", "remove", member_id, user=team.owner, org=team.org)
    assert (result.exit_code, result.stdout.strip()) == (0, "The member was removed.")
    refused = ocore("member", "list", user=user, org=team.org)
    assert refused.exit_code == 4 and refused.stderr.strip() == "ocore: You are not a member of this organization."


def test_transfer_ownership_then_the_former_owner_leaves(ocore: Ocore, team: Team) -> None:
    heir, heir_id = team.join("Admin", "heir")
    assert ocore("member", "leave", user=team.owner, org=team.org).exit_code == 6  # the Owner must transfer first
    moved = ocore("member", "transfer-ownership", heir_id, user=team.owner, org=team.org)
    assert moved.exit_code == 0 and "now an Admin" in moved.stdout
    left = ocore("member", "leave", "--json", user=team.owner, org=team.org)
    assert left.exit_code == 0 and json.loads(left.stdout) == {"message": "You have left the organization."}
    remaining = json.loads(ocore("member", "list", "--json", user=heir, org=team.org).stdout)["members"]
    assert [(m["email"], m["role"]["name"]) for m in remaining] == [(heir.email, "Owner")]
