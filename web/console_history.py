"""Settings > Access review, and each member's history: the auditors' questions in the browser, answered by
the access read model (`projections.access`) like the API's, for members with view:members.

An access review names a permission and a window of days (both included); it lists everyone who held the
permission at any moment of it, with each interval that gave it and who granted it, and exports as CSV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from flask import Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from membership.authorization import check_permission
from membership.permissions import VIEW_MEMBERS, all_permissions
from projections import access
from web.console import console_blueprint, seat, seated
from web.context import services

bp = console_blueprint("history_page", __name__, ("history_page.access_review", "Access review"))
PERMISSIONS = [(p.id, p.description) for p in all_permissions()]


@dataclass
class Window:
    """The review's form as typed, and as read."""

    form: dict[str, str]
    since: datetime | None = None
    until: datetime | None = None
    problems: list[str] = field(default_factory=list)


@bp.get("/settings/members/<uuid:member_id>/history")
@seated
def member_history(member_id: UUID) -> ResponseReturnValue:
    here = seat()
    check_permission(here.permissions, VIEW_MEMBERS)
    holder = access.member_history(services().read_db, here.organization_id, member_id)
    if holder is None:
        abort(404)
    return render_template("console/member_history.html", seat=here, intervals=holder.intervals, member=holder)


@bp.get("/settings/access-review")
@seated
def access_review() -> ResponseReturnValue:
    here = seat()
    check_permission(here.permissions, VIEW_MEMBERS)
    window = _window()
    holders = _holders(window) if window.since and not window.problems else None
    page = render_template("console/access_review.html", seat=here, window=window, holders=holders,
                           permissions=PERMISSIONS)  # fmt: skip
    return (page, 400) if window.problems else page


@bp.get("/settings/access-review/export")
@seated
def export() -> ResponseReturnValue:
    check_permission(seat().permissions, VIEW_MEMBERS)
    window = _window()
    if window.problems or window.since is None:
        abort(400)
    name = f"access-review-{window.form['permission'].replace(':', '-')}-{window.form['since']}.csv"
    return Response(access.review_csv(_holders(window)), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


def _holders(window: Window) -> list[access.Holder]:
    assert window.since is not None and window.until is not None
    here = seat()
    return access.access_review(
        services().read_db, here.organization_id, window.form["permission"], window.since, window.until
    )


def _window() -> Window:
    today = datetime.now(UTC).date()
    form = {
        "permission": request.args.get("permission", "manage:members"),
        "since": request.args.get("since", ""),
        "until": request.args.get("until", "") or today.isoformat(),
    }
    window = Window(form)
    if form["permission"] not in dict(PERMISSIONS):
        window.problems.append("Choose a permission from the list.")
    since, until = _day(form["since"], "From", window), _day(form["until"], "To", window)
    if since and until and since > until:
        window.problems.append("From must be on or before To.")
    if since and until and not window.problems:
        window.since = datetime.combine(since, time(), UTC)
        window.until = datetime.combine(until + timedelta(days=1), time(), UTC) - timedelta(microseconds=1)
    return window


def _day(text: str, label: str, window: Window) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        window.problems.append(f"{label} must be a date, such as 2025-01-31.")
        return None
