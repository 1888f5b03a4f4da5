"""The operator tools: temporal replay, audit export and projection status, on both stores."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from membership import Organization
from projections.history import describe, organization_at
from service.bootstrap import Services
from service.cli import main
from tests.conftest import EMBEDDED_STORE_ONLY, TEST_SECRET_KEY
from tests.factories import Clock, new_actor
from tests.helpers import member_id, role_id

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def timeline(services: Services) -> tuple[object, list[tuple[datetime, Organization]]]:
    """An organization changing once an hour; the state after each change, and when."""
    app, clock = services.organizations, Clock(START)
    app.clock = clock
    owner, ann = new_actor("owner"), new_actor("ann")
    org = app.create_organization(owner, "Timeline").organization_id
    states = [(clock.now, app.get_organization(org))]
    steps = [
        lambda: app.accept_invitation(
            ann, app.invite_member(org, owner, ann.email, role_id(app, org, "Developer")).secret
        ),
        lambda: app.invite_member(org, owner, "bob@example.com", role_id(app, org, "Viewer"), expires_in_days=1),
        lambda: app.create_role(org, owner, "QA", "", ["view:projects"]),
        lambda: app.change_role(org, owner, member_id(app, org, ann), role_id(app, org, "Admin")),
        lambda: app.create_invite_link(org, owner, role_id(app, org, "Viewer"), max_uses=3, expires_in_days=2),
        lambda: app.transfer_ownership(org, owner, member_id(app, org, ann)),
    ]
    for step in steps:
        clock.advance(hours=1)
        step()
        states.append((clock.now, app.get_organization(org)))
    services.runner.catch_up()
    return org, states


def test_replay_at_any_moment_matches_the_state_the_application_had(services: Services, timeline: tuple) -> None:
    org, states = timeline
    for at, state in states:
        for moment in (at, at + timedelta(minutes=59)):
            assert organization_at(services.organizations, org, moment) == describe(state, moment)


def test_replay_knows_when_an_invitation_had_expired(services: Services, timeline: tuple) -> None:
    org, states = timeline
    invited_at = states[2][0]
    assert [i["email"] for i in organization_at(services.organizations, org, invited_at).pending_invitations] == [
        "bob@example.com"
    ]
    assert organization_at(services.organizations, org, invited_at + timedelta(days=1)).pending_invitations == []


def test_replay_before_the_organization_existed_is_none(services: Services, timeline: tuple) -> None:
    org, _ = timeline
    assert organization_at(services.organizations, org, START - timedelta(seconds=1)) is None


def cli(store: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, list(args), env={"MEMBERSHIP_DATABASE_URL": store, "MEMBERSHIP_SECRET_KEY": TEST_SECRET_KEY}
    )
    return result.exit_code, result.stdout, result.stderr


def test_replay_command_prints_members_and_json(store: str, timeline: tuple) -> None:
    org, states = timeline
    code, out, _ = cli(store, "audit", "replay", "--org", str(org), "--at", "2026-03-01T12:30:00Z", "--json")
    assert code == 0
    past = json.loads(out)
    assert sorted(m["role"] for m in past["members"]) == ["Developer", "Owner"]
    assert [r["name"] for r in past["roles"]][-1] == "QA"
    code, out, _ = cli(store, "audit", "replay", "--org", str(org), "--at", "2026-03-01T20:00:00")
    assert code == 0 and "Members (2)" in out and "Invite links (1)" in out


@EMBEDDED_STORE_ONLY
def test_replay_command_refuses_bad_times_and_unknown_organizations(store: str, timeline: tuple) -> None:
    org, _ = timeline
    code, _, err = cli(store, "audit", "replay", "--org", str(org), "--at", "yesterday")
    assert code == 2 and "not an ISO 8601" in err
    code, _, err = cli(store, "audit", "replay", "--org", "00000000-0000-0000-0000-000000000000", "--at", "2026-03-02")
    assert code == 1 and "did not exist" in err


def test_audit_export_streams_jsonl_and_csv_with_time_filters(store: str, timeline: tuple) -> None:
    org, _ = timeline
    code, out, _ = cli(store, "audit", "export", "--org", str(org))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["type"] for line in lines][:3] == ["Created", "MemberJoined", "MemberInvited"]
    assert [line["position"] for line in lines] == sorted(line["position"] for line in lines)
    code, out, _ = cli(store, "audit", "export", "--org", str(org), "--since", "2026-03-01T10:00:00Z",
                       "--until", "2026-03-01T12:00:00Z", "--format", "csv")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [row["type"] for row in rows] == ["MemberInvited", "InviteAccepted", "MemberInvited"]
    assert all("10:00" <= row["occurredAt"][11:16] < "12:00" for row in rows)


def test_projection_status_shows_positions_and_lag(store: str, timeline: tuple, services: Services) -> None:
    code, out, _ = cli(store, "projections", "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["latest"] == services.organizations.recorder.max_notification_id()
    assert {p["name"]: p["lag"] for p in status["projections"]} == {
        "access": 0,
        "audit": 0,
        "invitations": 0,
        "jobs": 0,
        "members": 0,
        "roles": 0,
    }


def test_projection_rebuild_command_rebuilds_and_reports(store: str, timeline: tuple) -> None:
    code, out, err = cli(store, "projections", "rebuild", "roles", "--grace", "0")
    assert code == 0 and "rebuilt: roles (generation 2)" in out
    code, _, err = cli(store, "projections", "rebuild", "nope")
    assert code == 2 and "unknown projection nope" in err


def test_a_failing_export_says_why_in_one_line_and_exits_1(store: str, timeline: tuple, services: Services) -> None:
    org, _ = timeline
    with services.read_db.transaction() as cursor:
        cursor.execute("DROP TABLE audit_log_g1")  # the export cannot be produced: it must not look like one
    code, out, err = cli(store, "audit", "export", "--org", str(org))
    assert code == 1 and out == ""
    assert err.startswith("membership: audit failed:") and "audit_log_g1" in err and len(err.splitlines()) == 1


def test_history_command_names_each_role_and_who_granted_it(store: str, services: Services, timeline: tuple) -> None:
    org, states = timeline
    ann = next(m for m in states[-1][1].members.values() if m.email.startswith("ann."))
    code, out, _ = cli(store, "audit", "history", "--org", str(org), "--member", str(ann.id), "--json")
    assert code == 0
    history = json.loads(out)
    assert [(i["role"]["name"], i["granted"]["how"]) for i in history["intervals"]] == [
        ("Developer", "invitation"), ("Admin", "role_change"), ("Owner", "ownership_transfer")
    ]  # fmt: skip
    code, out, _ = cli(store, "audit", "history", "--org", str(org), "--member", str(ann.id))
    assert code == 0 and "Roles held (3)" in out and "role_change by owner." in out
    code, _, err = cli(store, "audit", "history", "--org", str(org), "--member", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and "no member" in err


def test_access_review_command_as_table_json_and_csv(store: str, timeline: tuple) -> None:
    org, _ = timeline
    window = ["--org", str(org), "--permission", "manage:members", "--from", "2026-03-01T09:00:00Z",
              "--to", "2026-03-01T13:30:00Z"]  # fmt: skip
    code, out, _ = cli(store, "audit", "access-review", *window, "--format", "json")
    assert code == 0
    held = {h["email"].split(".")[0]: [i["role"]["name"] for i in h["intervals"]] for h in json.loads(out)["holders"]}
    assert held == {"owner": ["Owner"], "ann": ["Admin"]}  # Ann became an Admin at 13:00; a Developer before
    code, out, _ = cli(store, "audit", "access-review", *window, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and sorted(r["role"] for r in rows) == ["Admin", "Owner"]
    code, out, _ = cli(store, "audit", "access-review", *window)
    assert code == 0 and "manage:members from 2026-03-01T09:00:00+00:00" in out and "Held by (2)" in out
