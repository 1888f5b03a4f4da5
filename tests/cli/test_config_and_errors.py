"""`ocore login`, where settings come from (flag > env > stored), and one exit code per kind of failure."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests

from ocore.client import problem_error
from tests.cli.conftest import Ocore, Server, Team, User
from tests.servers import free_port

OCORE = str(Path(sys.executable).parent / "ocore")


def test_login_stores_token_url_and_org_in_a_0600_file_that_later_commands_use(
    ocore: Ocore, team: Team, server: Server, isolated_config: Path
) -> None:
    result = ocore("login", "--token", team.owner.token(), "--url", server.base, "--org", team.org, OCORE_URL=None)
    assert result.exit_code == 0 and str(isolated_config) in result.stdout
    assert stat.S_IMODE(isolated_config.stat().st_mode) == 0o600
    assert json.loads(isolated_config.read_text()) == {"token": team.owner.token(), "url": server.base, "org": team.org}
    assert team.owner.token() not in result.output

    listed = ocore("member", "list", OCORE_URL=None)  # no flags, no environment: the stored settings
    assert listed.exit_code == 0 and team.owner.email in listed.stdout


def test_login_prompts_for_the_token_and_keeps_other_stored_settings(
    ocore: Ocore, team: Team, isolated_config: Path
) -> None:
    isolated_config.parent.mkdir(parents=True)
    isolated_config.write_text(json.dumps({"url": "http://example.invalid", "org": team.org}))
    isolated_config.chmod(0o644)
    token = team.owner.token()
    result = ocore("login", input=f"{token}\n")
    assert result.exit_code == 0 and token not in result.output
    assert json.loads(isolated_config.read_text()) == {"url": "http://example.invalid", "org": team.org, "token": token}
    assert stat.S_IMODE(isolated_config.stat().st_mode) == 0o600


def test_a_flag_beats_the_environment_which_beats_the_stored_config(
    ocore: Ocore, team: Team, server: Server, isolated_config: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    stranger = User.new("stranger")
    assert ocore("login", "--token", team.owner.token(), "--url", dead, "--org", team.org).exit_code == 0

    env_url = ocore("member", "list", OCORE_URL=server.base)  # env URL over the stored dead one
    assert env_url.exit_code == 0 and team.owner.email in env_url.stdout
    flag_url = ocore("--url", dead, "member", "list", OCORE_URL=server.base)  # flag over env
    assert flag_url.exit_code == 1 and f"cannot connect to {dead}/" in flag_url.stderr

    env_token = ocore("member", "list", OCORE_URL=server.base, OCORE_TOKEN=stranger.token())
    assert env_token.exit_code == 4  # the stranger's token from the environment was used
    flag_token = ocore("member", "list", "--token", team.owner.token(), OCORE_TOKEN=stranger.token())
    assert flag_token.exit_code == 0
    other = ocore("org", "create", "Elsewhere", "--json", user=stranger)
    flag_org = ocore("member", "list", "--org", json.loads(other.stdout)["id"], user=stranger, OCORE_ORG=team.org)
    assert flag_org.exit_code == 0 and stranger.email in flag_org.stdout


def test_usage_errors_exit_2(ocore: Ocore, team: Team) -> None:
    missing_option = ocore("member", "invite", "--email", "a@example.com", user=team.owner, org=team.org)
    assert missing_option.exit_code == 2 and "Missing option '--role'" in missing_option.stderr
    assert ocore("invitation", "cancel", "not-a-uuid", user=team.owner, org=team.org).exit_code == 2
    assert ocore("member", "remove", "bob", user=team.owner, org=team.org).exit_code == 2
    no_org = ocore("member", "list", user=team.owner)
    assert no_org.exit_code == 2 and no_org.stderr.startswith("ocore: no organization: pass --org")


def test_authentication_errors_exit_3(ocore: Ocore, team: Team) -> None:
    expired = ocore("member", "list", org=team.org, OCORE_TOKEN=team.owner.token(exp=int(time.time()) - 3600))
    assert (expired.exit_code, expired.stderr) == (3, "ocore: The token has expired.\n")
    assert ocore("member", "list", org=team.org, OCORE_TOKEN="garbage").exit_code == 3
    no_token = ocore("member", "list", org=team.org)
    assert no_token.exit_code == 3 and "ocore login" in no_token.stderr


def test_permission_errors_exit_4_naming_the_permission(ocore: Ocore, team: Team) -> None:
    developer, _ = team.join("Developer")
    result = ocore("member", "invite", "--email", "x@example.com", "--role", "Viewer", user=developer, org=team.org)
    assert (result.exit_code, result.stderr) == (4, "ocore: This action requires the manage:members permission.\n")


def test_not_found_errors_exit_5(ocore: Ocore, team: Team) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    result = ocore("member", "remove", unknown, user=team.owner, org=team.org)
    assert (result.exit_code, result.stderr) == (5, f"ocore: No member {unknown} in this organization.\n")
    no_role = ocore("member", "invite", "--email", "x@example.com", "--role", "Wizard", user=team.owner, org=team.org)
    assert no_role.exit_code == 5 and "no role 'Wizard'" in no_role.stderr and "Developer" in no_role.stderr
    assert ocore("member", "remove", "nobody@example.com", user=team.owner, org=team.org).exit_code == 5


def test_conflicts_exit_6(ocore: Ocore, team: Team) -> None:
    result = ocore("member", "remove", team.member_id(team.owner), user=team.owner, org=team.org)
    assert result.exit_code == 6 and result.stderr.startswith("ocore: ") and len(result.stderr.splitlines()) == 1


def test_other_errors_exit_1_with_the_field_errors_on_one_line(ocore: Ocore, team: Team) -> None:
    result = ocore("member", "invite", "--email", "x@example.com", "--role", "Viewer", "--expires-in-days", "99",
                   user=team.owner, org=team.org)  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("ocore: The request has invalid or unknown fields. (expiresInDays: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_non_problem_answer_still_becomes_one_line() -> None:
    response = requests.Response()
    response.status_code, response.reason, response.url = 502, "Bad Gateway", "http://proxy/api/members"
    response._content = b"<html>oops</html>"
    error = problem_error(response)
    assert (error.exit_code, error.message) == (1, "HTTP 502 Bad Gateway from http://proxy/api/members")


def test_the_installed_script_names_the_refused_url_without_a_traceback(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "OCORE_TOKEN": "t", "OCORE_ORG": "o"}
    result = subprocess.run(
        [OCORE, "--url", url, "member", "list"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and not result.stdout
    assert result.stderr == f"ocore: cannot connect to {url}/ (connection refused; is the server running?)\n"


def test_the_installed_script_lists_members_over_real_http(team: Team, server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "OCORE_URL": server.base, "OCORE_TOKEN": team.owner.token()}
    result = subprocess.run(
        [OCORE, "member", "list", "--org", team.org], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and team.owner.email in result.stdout


def test_org_list_and_create_and_me(ocore: Ocore, team: Team) -> None:
    created = ocore("org", "create", "Second", user=team.owner)
    assert created.exit_code == 0 and created.stdout.startswith("Created organization Second (")
    listed = ocore("org", "list", user=team.owner)
    assert team.org in listed.stdout and "Second" in listed.stdout and "Owner" in listed.stdout
    me = ocore("me", user=team.owner, org=team.org)
    assert me.exit_code == 0 and me.stdout.startswith(f"{team.owner.email} ({team.owner.user_id}), Owner")
