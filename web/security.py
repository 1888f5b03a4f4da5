"""What every page carries: CSRF checks on forms and headers that confine the browser.

Only the pages use the cookie session, so only their forms are checked for CSRF; the API is
called with bearer tokens, which a browser never sends by itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, g, request, url_for
from flask_wtf.csrf import CSRFProtect

from web.context import settings

csrf = CSRFProtect()


def check_form() -> None:
    """Before a page's view: a POST must carry the session's CSRF token (Flask-WTF raises CSRFError)."""
    if request.method == "POST":
        csrf.protect()


def confine(response: Response) -> Response:
    """After a page's view: a strict Content-Security-Policy and no leaks of the URL (it may hold a token)."""
    response.headers["Content-Security-Policy"] = content_security_policy(scripts=g.get("own_scripts", False))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"  # invitation tokens are in the page's address
    response.headers["Cache-Control"] = "no-store"  # pages name people and carry tokens
    return response


def allow_own_scripts() -> None:
    """This page loads a script file of this origin (web/static, an enhancement it works without): its policy
    adds `script-src 'self'`. Never inline scripts; every other page runs none at all."""
    g.own_scripts = True


def content_security_policy(scripts: bool = False) -> str:
    # Forms may lead to the identity provider (signing out there); nothing else leaves this origin.
    provider = settings().oidc
    form_targets = "'self'" + (f" {_origin(provider.issuer)}" if provider is not None else "")
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        + ("script-src 'self'; " if scripts else "")
        + f"form-action {form_targets}; frame-ancestors 'none'; base-uri 'none'"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def safe_next(target: str | None, default: str | None = None) -> str:
    """Where to go after signing in or out: only a path of this service, never another site."""
    fallback = default or url_for("signin.account")
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return fallback
    return target
