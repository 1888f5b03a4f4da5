"""Lists the API pages: `ocore` follows `nextCursor`, so role and invite-link lists stay whole."""

from __future__ import annotations

import json
import uuid

from tests.cli.conftest import Ocore, Team


def test_role_list_and_role_names_reach_past_the_first_page(ocore: Ocore, team: Team) -> None:
    names = [f"Role {n:03}" for n in range(197)]  # with the 4 system roles: more than one page of 200
    for name in names:
        team.api("POST", "/api/roles", json={"name": name, "permissionIds": []})

    listed = json.loads(ocore("role", "list", "--json", user=team.owner, org=team.org).stdout)
    renamed = ocore("role", "update", names[-1], "--name", "Last", user=team.owner, org=team.org)

    assert [r["name"] for r in listed["roles"][4:]] == names and listed["nextCursor"] is None
    assert renamed.exit_code == 0, renamed.output


def test_job_list_shows_one_page_or_with_all_every_page(ocore: Ocore, team: Team) -> None:
    made = [team.api("POST", "/api/members/bulk/remove", json={"memberIds": [str(uuid.uuid4())]})["job"]["id"]
            for _ in range(3)]  # fmt: skip

    first = ocore("job", "list", "--limit", "2", user=team.owner, org=team.org)
    every = json.loads(ocore("job", "list", "--limit", "2", "--all", "--json", user=team.owner, org=team.org).stdout)

    assert made[2] in first.stdout and made[0] not in first.stdout and "--all" in first.stderr
    assert [job["id"] for job in every["jobs"]] == made[::-1]
