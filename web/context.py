"""The current request's view of the service: its parts, and who is signed in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, session

from membership import Actor

if TYPE_CHECKING:  # the service package builds the parts; the pages only use them
    from service.bootstrap import Services
    from service.settings import Settings

USER_KEY = "user"


def services() -> Services:
    return current_app.extensions["membership"]  # type: ignore[no-any-return]


def settings() -> Settings:
    return services().settings


def signed_in_user() -> Actor | None:
    """The person signed in with this browser, or None."""
    user: dict[str, Any] | None = session.get(USER_KEY)
    if not user:
        return None
    return Actor(user["sub"], user.get("email", ""), user.get("name", ""), user.get("email_verified"))


def sign_in(user: Actor) -> None:
    """Start a session for `user` (a new one: nothing from before signing in is kept, so the CSRF token and
    the provider's state are fresh)."""
    session.clear()
    session.permanent = True  # lives MEMBERSHIP_SESSION_HOURS, not until the browser closes
    session[USER_KEY] = {"sub": user.user_id, "email": user.email, "name": user.name}
    if user.email_verified is not None:
        session[USER_KEY]["email_verified"] = user.email_verified


def sign_out() -> None:
    session.clear()
