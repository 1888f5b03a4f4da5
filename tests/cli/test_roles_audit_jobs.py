"""`ocore role|permission|audit|job ...` and the bulk commands with their progress bar."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Ocore, Team


def test_role_create_update_delete_by_name_and_permission_list(ocore: Ocore, team: Team) -> None:
    permissions = ocore("permission", "list", user=team.owner)
    assert permissions.exit_code == 0 and "manage:members" in permissions.stdout

    created = ocore("role", "create", "Support", "--description", "Helps", "-p", "view:members",
                    user=team.owner, org=team.org)  # fmt: skip
    assert created.exit_code == 0 and "Created role Support" in created.stdout
    updated = ocore("role", "update", "support", "--name", "Helpdesk", "-p", "view:members", "-p", "view:roles",
                    "--json", user=team.owner, org=team.org)  # fmt: skip
    role = json.loads(updated.stdout)
    assert (role["name"], sorted(role["permissions"])) == ("Helpdesk", ["view:members", "view:roles"])

    listed = ocore("role", "list", user=team.owner, org=team.org)
    assert listed.stdout.splitlines()[0].split() == ["ID", "NAME", "TYPE", "MEMBERS", "PERMISSIONS", "DESCRIPTION"]
    assert "Helpdesk" in listed.stdout and "custom" in listed.stdout

    assert ocore("role", "update", "Helpdesk", user=team.owner, org=team.org).exit_code == 2  # nothing to change
    deleted = ocore("role", "delete", "HELPDESK", user=team.owner, org=team.org)
    assert (deleted.exit_code, deleted.stdout.strip()) == (0, "The role was deleted.")
    assert ocore("role", "delete", "Helpdesk", user=team.owner, org=team.org).exit_code == 5


def test_a_role_in_use_cannot_be_deleted(ocore: Ocore, team: Team) -> None:
    assert ocore("role", "create", "Ops", "-p", "view:members", user=team.owner, org=team.org).exit_code == 0
    team.join("Ops")
    refused = ocore("role", "delete", "Ops", user=team.owner, org=team.org)
    assert refused.exit_code == 6 and refused.stderr.startswith("ocore: ")


def test_audit_log_lists_events_newest_first_and_follows_pages(ocore: Ocore, team: Team) -> None:
    _, member_id = team.join("Viewer")
    assert (
        ocore("member", "update-role", member_id, "--role", "Developer", user=team.owner, org=team.org).exit_code == 0
    )
    log = ocore("audit", "log", user=team.owner, org=team.org)
    assert log.exit_code == 0 and log.stdout.splitlines()[0].split() == ["TIME", "TYPE", "ACTOR", "TARGET"]
    assert log.stdout.splitlines()[1].split()[2] == "RoleChanged"
    every = json.loads(ocore("audit", "log", "--all", "--limit", "1", "--json", user=team.owner, org=team.org).stdout)
    first = json.loads(ocore("audit", "log", "--limit", "1", "--json", user=team.owner, org=team.org).stdout)
    assert len(every["events"]) >= 4 and every["nextCursor"] is None and first["nextCursor"]
    only = json.loads(ocore("audit", "log", "--type", "RoleChanged", "--json", user=team.owner, org=team.org).stdout)
    assert [e["type"] for e in only["events"]] == ["RoleChanged"]


def test_bulk_update_role_waits_with_a_progress_bar_and_ends_with_the_counts(ocore: Ocore, team: Team) -> None:
    members = [team.join("Viewer", f"bulk{i}") for i in range(3)]
    result = ocore("member", "bulk-update-role", "--role", "developer", *(m for _, m in members), "--wait",
                   user=team.owner, org=team.org)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3/3" in result.stderr and "bulk_role_change" in result.stderr  # the tqdm bar
    assert result.stdout.splitlines()[-1].endswith("succeeded: 3 succeeded, 0 failed, 3 of 3 processed.")
    roles = json.loads(ocore("member", "list", "--role", "Developer", "--json", user=team.owner, org=team.org).stdout)
    assert roles["total"] == 3


def test_bulk_remove_from_a_file_reports_the_failed_items_and_exits_1(ocore: Ocore, team: Team, tmp_path: Path) -> None:
    removed = [team.join(label=f"gone{i}")[1] for i in range(2)]
    owner_id = team.member_id(team.owner)
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# who goes\n{removed[0]}\n\n{removed[1]}  # and this one\n{owner_id}\n")
    result = ocore("member", "bulk-remove", "--from-file", str(ids), "--wait", user=team.owner, org=team.org)
    assert result.exit_code == 1, result.output
    summary, header, failed = result.stdout.splitlines()
    assert "partially_succeeded: 2 succeeded, 1 failed, 3 of 3 processed." in summary
    assert header.split() == ["MEMBER", "CODE", "MESSAGE"] and failed.startswith(owner_id)
    assert json.loads(ocore("member", "list", "--json", user=team.owner, org=team.org).stdout)["total"] == 1


def test_bulk_without_wait_starts_a_job_that_job_show_and_list_follow(ocore: Ocore, team: Team) -> None:
    _, member_id = team.join("Viewer")
    started = ocore("member", "bulk-update-role", "--role", "Admin", member_id, "--idempotency-key", "k-1",
                    user=team.owner, org=team.org)  # fmt: skip
    assert started.exit_code == 0 and started.stdout.startswith("Started job ")
    job_id = started.stdout.split()[2]
    again = ocore("member", "bulk-update-role", "--role", "Admin", member_id, "--idempotency-key", "k-1", "--json",
                  user=team.owner, org=team.org)  # fmt: skip
    assert json.loads(again.stdout)["job"]["id"] == job_id  # the same key returns the same job

    watched = ocore("job", "show", job_id, "--watch", user=team.owner, org=team.org)
    assert watched.exit_code == 0 and "succeeded: 1 succeeded, 0 failed" in watched.stdout
    shown = json.loads(ocore("job", "show", job_id, "--json", user=team.owner, org=team.org).stdout)
    assert (shown["status"], shown["results"][0]["memberId"]) == ("succeeded", member_id)
    listed = ocore("job", "list", user=team.owner, org=team.org)
    assert job_id in listed.stdout and "1/1" in listed.stdout
    finished = ocore("job", "cancel", job_id, user=team.owner, org=team.org)
    assert finished.exit_code == 6  # a finished job cannot be cancelled


def test_bulk_commands_need_ids_from_exactly_one_source(ocore: Ocore, team: Team, tmp_path: Path) -> None:
    (tmp_path / "ids").write_text("x\n")
    neither = ocore("member", "bulk-remove", user=team.owner, org=team.org)
    both = ocore("member", "bulk-remove", "abc", "--from-file", str(tmp_path / "ids"), user=team.owner, org=team.org)
    assert neither.exit_code == both.exit_code == 2 and "--from-file" in neither.stderr


def test_bulk_update_role_reads_ids_from_stdin(ocore: Ocore, team: Team) -> None:
    ids = "\n".join(team.join("Viewer", f"piped{i}")[1] for i in range(2))
    result = ocore("member", "bulk-update-role", "--role", "Admin", "--from-file", "-", "--wait", "--json",
                   user=team.owner, org=team.org, input=ids)  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert (job["status"], job["succeeded"], job["total"]) == ("succeeded", 2, 2)
