"""`ocore invitation ...` and `ocore invite-link ...`: list, cancel, resend, create, delete, accept."""

from __future__ import annotations

import json

from tests.cli.conftest import Ocore, Server, Team, User


def invite(ocore: Ocore, team: Team, invitee: User, role: str = "Viewer") -> str:
    result = ocore(
        "member", "invite", "--email", invitee.email, "--role", role, "--json", user=team.owner, org=team.org
    )
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["id"])


def test_invitation_list_shows_pending_by_default_and_every_status_on_request(ocore: Ocore, team: Team) -> None:
    pending, cancelled = User.new("pending"), User.new("cancelled")
    invite(ocore, team, pending)
    assert ocore("invitation", "cancel", invite(ocore, team, cancelled), user=team.owner, org=team.org).exit_code == 0

    listed = ocore("invitation", "list", user=team.owner, org=team.org)
    assert listed.stdout.splitlines()[0].split() == ["ID", "EMAIL", "ROLE", "STATUS", "EXPIRES", "INVITED", "BY"]
    assert pending.email in listed.stdout and cancelled.email not in listed.stdout
    every = json.loads(ocore("invitation", "list", "--status", "all", "--all", "--limit", "1", "--json",
                             user=team.owner, org=team.org).stdout)  # fmt: skip
    assert {(i["email"], i["status"]) for i in every["invitations"]} == {
        (pending.email, "pending"),
        (cancelled.email, "cancelled"),
    }


def test_a_cancelled_invitation_can_no_longer_be_accepted(ocore: Ocore, team: Team, server: Server) -> None:
    invitee = User.new("invitee")
    invitation_id = invite(ocore, team, invitee)
    token = server.invitation_token(invitation_id)
    cancelled = ocore("invitation", "cancel", invitation_id, user=team.owner, org=team.org)
    assert (cancelled.exit_code, cancelled.stdout.strip()) == (0, "The invitation was cancelled.")
    refused = ocore("invitation", "accept", token, user=invitee)
    assert refused.exit_code == 6 and refused.stderr.startswith("ocore: ") and len(refused.stderr.splitlines()) == 1


def test_resend_issues_a_new_token_and_the_old_one_stops_working(ocore: Ocore, team: Team, server: Server) -> None:
    invitee = User.new("resent")
    invitation_id = invite(ocore, team, invitee)
    old_token = server.invitation_token(invitation_id)
    resent = ocore("invitation", "resend", invitation_id, "--expires-in-days", "3", user=team.owner, org=team.org)
    assert resent.exit_code == 0 and resent.stdout.startswith(f"Re-sent the invitation to {invitee.email}")
    new_token = server.invitation_token(invitation_id)
    assert new_token != old_token
    stale = ocore("invitation", "accept", old_token, user=invitee)
    assert stale.exit_code == 6 and "sent again" in stale.stderr  # a superseded token: gone, and said so
    link = f"http://127.0.0.1:8000/invite/accept?token={new_token}"  # the whole link from the e-mail works too
    assert ocore("invitation", "accept", link, user=invitee).exit_code == 0


def test_invite_link_create_list_accept_until_used_up_then_delete(ocore: Ocore, team: Team) -> None:
    created = ocore("invite-link", "create", "--role", "viewer", "--max-uses", "1", "--expires-in-days", "7",
                    "--json", user=team.owner, org=team.org)  # fmt: skip
    assert created.exit_code == 0, created.output
    link = json.loads(created.stdout)
    assert (link["role"]["name"], link["maxUses"], link["useCount"]) == ("Viewer", 1, 0)

    first, second = User.new("first"), User.new("second")
    joined = ocore("invite-link", "accept", link["url"], user=first)
    assert joined.exit_code == 0 and "as Viewer" in joined.stdout
    used_up = ocore("invite-link", "accept", link["code"], user=second)
    assert used_up.exit_code == 6 and used_up.stderr.startswith("ocore: ")

    listed = ocore("invite-link", "list", user=team.owner, org=team.org)
    assert link["code"] in listed.stdout and "1/1" in listed.stdout
    deleted = ocore("invite-link", "delete", link["id"], user=team.owner, org=team.org)
    assert (deleted.exit_code, deleted.stdout.strip()) == (0, "The invite link was deleted.")
    assert json.loads(ocore("invite-link", "list", "--json", user=team.owner, org=team.org).stdout)["total"] == 0


def test_invite_link_create_prints_the_url_to_share(ocore: Ocore, team: Team) -> None:
    result = ocore("invite-link", "create", "--role", "Developer", user=team.owner, org=team.org)
    assert result.exit_code == 0, result.output
    url, summary = result.stdout.splitlines()
    assert "/join/" in url and "grants Developer, 0/unlimited uses" in summary
