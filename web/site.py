"""Puts the pages on the service's Flask app: the browser session, CSRF, sign-in and the accept pages."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Flask

from web import (
    accept_pages,
    console_audit,
    console_bulk,
    console_history,
    console_invitations,
    console_members,
    console_roles,
    console_settings,
    signin,
)
from web.console import console_sections, invite_endpoint
from web.context import signed_in_user
from web.formatting import address, when
from web.security import csrf

if TYPE_CHECKING:  # the service package builds the parts; the pages only use them
    from service.bootstrap import Services


def install(app: Flask, services: Services) -> None:
    """The pages, on the app `api.app.create_app` made over the same parts."""
    settings = services.settings
    # A key of its own, derived from the service's secret: a session cookie can never pass for a token.
    app.secret_key = hmac.new(settings.secret_key, b"membership browser sessions", hashlib.sha256).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="membership_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_lifetime_s),
        WTF_CSRF_CHECK_DEFAULT=False,  # the pages check their forms (web.security); the API takes no cookies
        WTF_CSRF_TIME_LIMIT=None,  # a form is good for as long as its session
    )
    csrf.init_app(app)
    signin.init_app(app, settings)
    app.jinja_env.globals.update(
        signed_in_user=signed_in_user, console_sections=console_sections, invite_endpoint=invite_endpoint,
        when=when, address=address,
    )  # fmt: skip
    for module in (
        signin,
        accept_pages,
        console_members,
        console_invitations,
        console_roles,
        console_audit,
        console_bulk,
        console_settings,
        console_history,
    ):
        app.register_blueprint(module.bp)
