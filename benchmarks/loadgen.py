"""The load generator of `benchmarks.http`: wrk with a Lua script making every request unique, or a Python one.

A `Plan` says what a run sends, the same to both servers:

- invite: POST /api/members/invite, each with a new e-mail (`{prefix}-t{thread}-{n}@bench.example`);
- role: PUT /api/members/{id}/role, cycling over the target members, each request giving its member the
  other of two roles than the last (each wrk thread owns its share of the members, so none is a no-op
  unless the organization has fewer members than there are connections);
- remove: DELETE /api/members/{id}, each target once (past the last one: 404s, counted);
- list: GET /api/members?limit=50.

Tokens come from a pool of pre-minted ones, in turn. Counted apart: every answer outside 2xx, by status,
and socket errors (connect, read, write, timeout). wrk comes from Debian's package (installed with apt-get
when missing, as scripts/pg installs PostgreSQL); without it, a thread per connection with http.client.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

WORKLOADS = {
    "invite": "POST /api/members/invite",
    "role": "PUT /api/members/{id}/role",
    "remove": "DELETE /api/members/{id}",
    "list": "GET /api/members?limit=50",
}
COMMANDS = ("invite", "role", "remove")

LUA_SCRIPT = r"""
-- benchmarks.loadgen: unique requests; args: the plan file, the number of threads
all_threads = {}
next_tid = 0
non2xx = 0
local counter, tokens, mine, current = 0, {}, {}, {}
local workload, org, prefix, invite_role, role_a, role_b = "", "", "", "", "", ""

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(all_threads, thread)
end

function init(args)
  local threads, index = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    local w = {}
    for word in line:gmatch("%S+") do w[#w + 1] = word end
    if w[1] == "workload" then workload = w[2]
    elseif w[1] == "org" then org = w[2]
    elseif w[1] == "token" then tokens[#tokens + 1] = w[2]
    elseif w[1] == "prefix" then prefix = w[2]
    elseif w[1] == "invite_role" then invite_role = w[2]
    elseif w[1] == "roles" then role_a, role_b = w[2], w[3]
    elseif w[1] == "target" then
      if index % threads == tid then mine[#mine + 1] = w[2]; current[#mine] = w[3] end
      index = index + 1
    end
  end
end

function request()
  counter = counter + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[(counter + tid) % #tokens + 1], ["X-Organization-Id"] = org}
  if workload == "invite" then
    headers["Content-Type"] = "application/json"
    local email = prefix .. "-t" .. tid .. "-" .. counter .. "@bench.example"
    return wrk.format("POST", "/api/members/invite", headers, '{"email": "' .. email .. '", "roleId": "' .. invite_role .. '"}')
  elseif workload == "role" then
    local i = (counter - 1) % #mine + 1
    if current[i] == role_a then current[i] = role_b else current[i] = role_a end
    headers["Content-Type"] = "application/json"
    return wrk.format("PUT", "/api/members/" .. mine[i] .. "/role", headers, '{"roleId": "' .. current[i] .. '"}')
  elseif workload == "remove" then
    return wrk.format("DELETE", "/api/members/" .. mine[math.min(counter, #mine)], headers)
  end
  return wrk.format("GET", "/api/members?limit=50", headers)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    _G["status_" .. status] = (_G["status_" .. status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad, by_status, shown = 0, {}, {}
  for _, thread in ipairs(all_threads) do
    bad = bad + (thread:get("non2xx") or 0)
    for code = 100, 599 do
      local n = thread:get("status_" .. code)
      if n then by_status[code] = (by_status[code] or 0) + n end
    end
  end
  for code, n in pairs(by_status) do shown[#shown + 1] = code .. ":" .. n end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "non2xx": %d, ' ..
    '"socket_errors": %d, "statuses": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max, bad,
    e.connect + e.read + e.write + e.timeout, table.concat(shown, " ")))
end
"""


@dataclass
class Plan:
    """What one run sends: the workload's requests, each unique."""

    workload: str
    organization_id: UUID
    tokens: list[str]
    prefix: str = ""  # invite: e-mails are {prefix}-t{thread}-{n}@bench.example
    invite_role: UUID | None = None
    roles: tuple[UUID, UUID] | None = None  # role: each change gives the other of these two
    targets: list[tuple[UUID, UUID]] = field(default_factory=list)  # role, remove: (member id, its role now)

    def write(self, path: Path) -> Path:
        lines = [f"workload {self.workload}", f"org {self.organization_id}", f"prefix {self.prefix or '-'}"]
        lines += [f"token {token}" for token in self.tokens]
        if self.invite_role:
            lines.append(f"invite_role {self.invite_role}")
        if self.roles:
            lines.append(f"roles {self.roles[0]} {self.roles[1]}")
        lines += [f"target {member} {role}" for member, role in self.targets]
        path.write_text("\n".join(lines) + "\n")
        return path


@dataclass
class Result:
    """One run's figures, from wrk's summary or the Python generator's."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    statuses: str  # non-2xx answers by status: "404:3 503:1"

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed_share(self) -> float:
        return (self.non_2xx + self.socket_errors) / max(self.requests, 1)


# -- wrk -----------------------------------------------------------------------------------------------------------
def find_wrk(install: bool) -> str | None:
    """wrk's path; installs Debian's package first when missing (as root), like scripts/pg does PostgreSQL's."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if os.getuid() != 0:
        print("loadgen: wrk is missing and only root can install it: using the Python load generator", file=sys.stderr)
        return None
    print("loadgen: no wrk found; installing Debian's wrk package", file=sys.stderr)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(command, stdout=sys.stderr, env=env, check=False).returncode:  # noqa: S607
            print(f"loadgen: {' '.join(command)} failed: using the Python load generator", file=sys.stderr)
            return None
    return shutil.which("wrk")


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split("Copyright")[0].strip() or "wrk"


def run_wrk(
    wrk: str, base: str, plan: Plan, workdir: Path, connections: int, threads: int, seconds: int, timeout_s: int
) -> Result:
    script = workdir / "loadgen.lua"
    if not script.exists():
        script.write_text(LUA_SCRIPT)
    plan_file = plan.write(workdir / "plan.txt")
    threads = min(threads, connections)
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "-s", str(script),
               base, "--", str(plan_file), str(threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + timeout_s + 60)
    found = re.search(r"^WRK_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode or found is None:
        raise RuntimeError(f"wrk failed (exit code {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    data = json.loads(found.group(1))
    return Result(
        data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000, data["p99_us"] / 1000,
        data["max_us"] / 1000, data["non2xx"], data["socket_errors"], data["statuses"],
    )  # fmt: skip


# -- the Python fallback -------------------------------------------------------------------------------------------------
class Requests:
    """The Lua script's requests, for connection `index` of `count` (each owns its share of the targets)."""

    def __init__(self, plan: Plan, index: int, count: int) -> None:
        self.plan, self.index, self.counter = plan, index, 0
        share = min(count, len(plan.targets)) or 1  # fewer targets than clients: some share theirs
        self.mine = [[str(member), str(role)] for member, role in plan.targets[index % share :: share]]

    def next(self) -> tuple[str, str, str | None, dict[str, str]]:
        self.counter += 1
        plan, n = self.plan, self.counter
        token = plan.tokens[(n + self.index) % len(plan.tokens)]
        headers = {"Authorization": f"Bearer {token}", "X-Organization-Id": str(plan.organization_id)}
        if plan.workload == "invite":
            email = f"{plan.prefix}-t{self.index}-{n}@bench.example"
            headers["Content-Type"] = "application/json"
            return "POST", "/api/members/invite", json.dumps({"email": email, "roleId": str(plan.invite_role)}), headers
        if plan.workload == "role":
            assert plan.roles is not None
            target = self.mine[(n - 1) % len(self.mine)]
            target[1] = str(plan.roles[1] if target[1] == str(plan.roles[0]) else plan.roles[0])
            headers["Content-Type"] = "application/json"
            return "PUT", f"/api/members/{target[0]}/role", json.dumps({"roleId": target[1]}), headers
        if plan.workload == "remove":
            return "DELETE", f"/api/members/{self.mine[min(n, len(self.mine)) - 1][0]}", None, headers
        return "GET", "/api/members?limit=50", None, headers


def run_python(base: str, plan: Plan, connections: int, seconds: int, timeout_s: int) -> Result:
    """One thread and one keep-alive connection per client (bound by the GIL: a fallback, not wrk's equal)."""
    address = urlsplit(base)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statuses: Counter[int] = Counter()
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        requests = Requests(plan, index, connections)
        conn = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=timeout_s)
        while time.monotonic() < deadline:
            method, path, body, headers = requests.next()
            started = time.perf_counter()
            try:
                conn.request(method, path, body, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                with lock:
                    errors[0] += 1
                continue
            latencies[index].append(time.perf_counter() - started)
            if not 200 <= response.status < 300:
                with lock:
                    statuses[response.status] += 1
            if response.will_close:
                conn.close()
        conn.close()

    started = time.perf_counter()
    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(x * 1000 for xs in latencies for x in xs)
    p50, p99 = _percentiles(every)
    shown = " ".join(f"{code}:{n}" for code, n in sorted(statuses.items()))
    return Result(len(every), elapsed, p50, p99, max(every, default=0.0), sum(statuses.values()), errors[0], shown)


def _percentiles(ordered: list[float]) -> tuple[float, float]:
    if len(ordered) < 2:
        return (ordered[0], ordered[0]) if ordered else (0.0, 0.0)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return cuts[49], cuts[98]
