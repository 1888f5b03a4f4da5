"""Settings > Bulk jobs: changing the role of, or removing, many members at once, as a background job.

The Members page's selection (ticked rows, or every member matching its filter, resolved here on the server and
at most 10,000 as in the API) posts here; the application queues the job and the job runner applies it batch by
batch, by exactly the rules of the single commands (membership.jobs). As in the API (api/jobs.py), seeing jobs
needs manage:members, and the domain refuses anyone the page would not have offered the selection to. The form
carries a key made when it was rendered, the job's idempotency key: submitting one form twice starts one job.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from flask import abort, flash, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from membership import Receipt
from membership import exceptions as err
from membership.jobs import FINISHED, MAX_ITEMS, REMOVAL, ROLE_CHANGE, IdempotencyKeyReusedError
from membership.permissions import MANAGE_MEMBERS, in_words
from projections import audit as audit_reads
from projections import jobs as jobs_reads
from projections import members as members_reads
from projections import roles as roles_reads
from projections.jobs import JobItemRecord, JobRecord
from web.console import back, console_blueprint, run, seat, seated
from web.context import services
from web.security import allow_own_scripts

bp = console_blueprint("bulk_page", __name__, ("bulk_page.jobs", "Bulk jobs"))
PAGE_SIZE = 50
RESULTS_PAGE_SIZE = 100
REFRESH_SECONDS = 2
FORM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
STATES = {
    "queued": "Waiting to start", "running": "Running", "succeeded": "Finished: every member done",
    "partially_succeeded": "Finished: some members were not changed", "failed": "Finished: no member was changed",
    "cancelled": "Cancelled",
}  # fmt: skip
NOT_DONE = {
    "cannot_modify_yourself": "Skipped: this is you (a bulk job never changes the person who started it)",
    "owner_role_cannot_change": "Skipped: the Owner (their role changes only by transferring ownership)",
    "owner_cannot_be_removed": "Skipped: the Owner (who cannot be removed)",
    "member_not_found": "Not found: not a member of the organization (any more)",
    "missing_permission": "Refused: you no longer have the permission to manage members",
}
REFUSED = {"privilege_escalation", "owner_role_not_assignable"}  # the domain's words say why


@bp.app_template_global()
def bulk_form_key() -> str:
    """A new key for each rendering of the Members page's bulk form (a Jinja global)."""
    return secrets.token_urlsafe(18)


# -- starting a job ----------------------------------------------------------------------------------------------
@bp.post("/settings/members/bulk")
@seated
def start() -> ResponseReturnValue:
    here = seat()
    job_type, role_id = _action(request.form.get("action", ""))
    member_ids = _chosen(request.form)
    if member_ids is None:
        return _back_to_members()
    if job_type == REMOVAL and request.form.get("confirmed") != "yes" and here.may(MANAGE_MEMBERS):
        return render_template("console/bulk_confirm.html", seat=here, count=len(member_ids), form=request.form,
                               member_ids=member_ids if request.form.get("scope") != "matching" else [])  # fmt: skip
    key = _form_key(request.form.get("form_key"))
    receipt = run(lambda: _request(job_type, member_ids, role_id, key), "The job was started.")
    if receipt is None or receipt.id is None:
        return _back_to_members()
    return back("bulk_page.job", job_id=receipt.id)


def _request(job_type: str, member_ids: list[UUID], role_id: UUID | None, key: str | None) -> Receipt:
    here = seat()
    try:
        return services().organizations.request_bulk_job(
            here.organization_id, here.user, job_type, member_ids, role_id, key
        )[0]
    except IdempotencyKeyReusedError:
        raise err.ConflictError("This form already started a job for other members: reload the Members page "
                                "to start another.") from None  # fmt: skip


def _chosen(form: MultiDict[str, str]) -> list[UUID] | None:
    """The members the form names: the ticked rows, or every member matching its filter (None: said why)."""
    if form.get("scope") == "matching":
        return _matching((form.get("q") or "").strip()[:200], form.get("role") or None)
    ids = [_uuid(text) for text in form.getlist("member_id")]
    if not ids:
        flash("Tick at least one member, or choose all the members matching the filter.", "error")
    elif len(ids) > MAX_ITEMS:
        flash(f"A job changes at most {MAX_ITEMS:,} members.", "error")
    return ids if 0 < len(ids) <= MAX_ITEMS else None


def _matching(query: str, role_id: str | None) -> list[UUID] | None:
    """Resolved here, from the read model, as the Members page lists them; a role of no organization matches none."""
    page = members_reads.list_members(services().read_db, seat().organization_id, role_id, query or None, MAX_ITEMS)
    if page.total > MAX_ITEMS:
        flash(f"{page.total:,} members match this filter; a job changes at most {MAX_ITEMS:,}. Narrow the search "
              "or the role filter.", "error")  # fmt: skip
        return None
    if not page.items:
        flash("No member matches this filter.", "error")
        return None
    return [UUID(member.id) for member in page.items]


def _back_to_members() -> ResponseReturnValue:
    return back("members_page.members", q=request.form.get("q") or None, role=request.form.get("role") or None)


# -- the jobs ----------------------------------------------------------------------------------------------------
@bp.get("/settings/jobs")
@seated
def jobs() -> ResponseReturnValue:
    here = seat()
    if not here.may(MANAGE_MEMBERS):  # as GET /api/jobs
        return _not_allowed()
    try:
        page = jobs_reads.list_jobs(
            services().read_db, here.organization_id, PAGE_SIZE, request.args.get("cursor") or None
        )
    except ValueError:
        abort(400)
    return render_template("console/bulk_jobs.html", seat=here, page=page, states=STATES)


@bp.get("/settings/jobs/<uuid:job_id>")
@seated
def job(job_id: UUID) -> ResponseReturnValue:
    here = seat()
    if not here.may(MANAGE_MEMBERS):  # as GET /api/jobs/{id}
        return _not_allowed()
    record = jobs_reads.get_job(services().read_db, here.organization_id, job_id)
    if record is None:
        abort(404)
    finished = record.status in FINISHED
    if not finished:
        allow_own_scripts()  # web/static/job-progress.js: the progress moves by itself (the Refresh link without it)
    role = _role_name(record)
    return render_template(
        "console/bulk_job.html", seat=here, job=record, heading=_heading(record, role), states=STATES, finished=finished,
        refresh_seconds=REFRESH_SECONDS, summary=_summary(record, role) if finished else [],
        results=_results(record, role) if finished else None,
    )  # fmt: skip


@bp.post("/settings/jobs/<uuid:job_id>/cancel")
@seated
def cancel(job_id: UUID) -> ResponseReturnValue:
    here = seat()
    run(lambda: services().organizations.cancel_job(here.organization_id, here.user, job_id),
        "The job stops after the batch in progress.")  # fmt: skip
    return back("bulk_page.job", job_id=job_id) if here.may(MANAGE_MEMBERS) else back("members_page.members")


# -- results in words --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultLine:
    number: int  # in the order the members were asked for, from 1
    name: str
    email: str
    member_id: str
    done: bool
    said: str


@dataclass(frozen=True)
class ResultsPage:
    lines: list[ResultLine]
    show: str  # "all" or "not_done"
    matching: int  # results shown under `show`
    number: int  # this page, from 1
    pages: int


def _said(job_type: str, item: JobItemRecord, role: str) -> str:
    """One item's outcome in words."""
    if item.status == "succeeded":
        return "Removed" if job_type == REMOVAL else f"Done: now {role}"
    if item.code in REFUSED:
        return f"Refused: {item.message}"
    return NOT_DONE.get(item.code) or f"Not done: {item.message}"


def _summary(record: JobRecord, role: str) -> list[tuple[str, int]]:
    """How many members met each outcome, in the order they first met it."""
    counted = Counter(_said(record.type, item, role) for item in record.results)
    if record.processed < record.total:
        counted["Not processed: the job was cancelled first"] = record.total - record.processed
    return list(counted.items())


def _results(record: JobRecord, role: str) -> ResultsPage:
    show = "not_done" if request.args.get("show") == "not_done" else "all"
    numbered = [(n, item) for n, item in enumerate(record.results, 1) if show == "all" or item.status != "succeeded"]
    pages = max(1, -(-len(numbered) // RESULTS_PAGE_SIZE))
    number = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    shown = numbered[(number - 1) * RESULTS_PAGE_SIZE : number * RESULTS_PAGE_SIZE]
    names = _names(record, [item.member_id for _, item in shown])
    lines = [ResultLine(n, *names.get(item.member_id, ("", "")), item.member_id, item.status == "succeeded",
                        _said(record.type, item, role)) for n, item in shown]  # fmt: skip
    return ResultsPage(lines, show, len(numbered), number, pages)


def _names(record: JobRecord, member_ids: list[str]) -> dict[str, tuple[str, str]]:
    """(name, e-mail) of the members shown: the members' read model, else, for those a removal took away, the
    e-mail the audit log kept."""
    db, org = services().read_db, seat().organization_id
    found = {}
    for member_id in member_ids:
        member = members_reads.get_member(db, org, UUID(member_id))
        if member is not None:
            found[member_id] = (member.name, member.email)
    if record.type == REMOVAL and len(found) < len(member_ids):
        until = (record.finished_at or services().organizations.clock()) + timedelta(seconds=1)
        entries = audit_reads.audit_page(db, org, limit=2 * MAX_ITEMS, since=record.created_at, until=until,
                                         event_type="MemberRemoved", actor=record.created_by.user_id)  # fmt: skip
        gone = {entry.target_id: entry.target_label for entry in entries}
        found.update({member_id: ("", gone[member_id]) for member_id in member_ids if member_id in gone})
    return found


def _role_name(record: JobRecord) -> str:
    """The role a role change gives (the read model of jobs keeps no role: the job itself does)."""
    if record.type != ROLE_CHANGE:
        return ""
    role_id = services().organizations.get_job(seat().organization_id, UUID(record.id)).role_id
    roles = roles_reads.list_roles(services().read_db, seat().organization_id, counted=False)
    return next((role.name for role in roles if role.id == role_id), "a role deleted since")


def _heading(record: JobRecord, role: str) -> str:
    members = f"{record.total:,} member{'' if record.total == 1 else 's'}"
    return f"Remove {members}" if record.type == REMOVAL else f"Change the role of {members} to {role}"


# -- shared ------------------------------------------------------------------------------------------------------
def _action(text: str) -> tuple[str, UUID | None]:
    """The form's action: "remove", or "role:<role id>"."""
    if text == "remove":
        return REMOVAL, None
    if text.startswith("role:"):
        return ROLE_CHANGE, _uuid(text.removeprefix("role:"))
    abort(400)


def _form_key(text: str | None) -> str | None:
    if not text:
        return None
    if not FORM_KEY.fullmatch(text):
        abort(400)
    return f"console:{text}"  # apart from the keys clients of the API choose


def _not_allowed() -> ResponseReturnValue:
    return render_template("console/not_allowed.html", seat=seat(), section="Bulk jobs",
                           needs=in_words([MANAGE_MEMBERS])), 403  # fmt: skip


def _uuid(text: str | None) -> UUID:
    try:
        return UUID(text or "")
    except ValueError:
        abort(400)
