"""Signing in and out: OpenID Connect (Authorization Code flow with PKCE, by authlib), or on a
development server a form that asks only for an e-mail address and a name.

The person is the ID token's `sub`, with its `email`, `name` and `email_verified` claims: the same
user as one calling the API with a token from the same provider.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from joserfc.errors import JoseError

from membership import Actor
from membership.exceptions import InvalidValueError
from membership.inputs import check_actor, person_name, validate_email
from web import refusals
from web.context import settings, sign_in, sign_out, signed_in_user
from web.security import check_form, confine, safe_next

if TYPE_CHECKING:
    from authlib.integrations.flask_client.apps import FlaskOAuth2App

    from service.settings import Settings

bp = Blueprint("signin", __name__, url_prefix="/auth", template_folder="templates")
bp.before_request(check_form)
bp.after_request(confine)
refusals.register(bp)
NEXT_KEY = "next"  # where to go once the provider sends the person back
PROVIDER_TIMEOUT_S = 10
log = logging.getLogger("web")
DEVELOPMENT_PREFIX = "dev:"  # user ids made by the development form, never mistaken for a provider's


def init_app(app: Flask, settings: Settings) -> None:
    """Register the identity provider's client with this app (each app its own: settings differ in tests)."""
    provider = settings.oidc
    if provider is None:
        return
    oauth = OAuth(app)
    client_kwargs: dict[str, Any] = {
        "scope": provider.scopes,
        "code_challenge_method": "S256",
        "default_timeout": PROVIDER_TIMEOUT_S,
    }
    if not provider.client_secret:
        client_kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105 (a public client: PKCE alone)
    oauth.register(
        "oidc",
        client_id=provider.client_id,
        client_secret=provider.client_secret or None,
        server_metadata_url=provider.discovery_url,
        client_kwargs=client_kwargs,
    )
    app.extensions["membership.oidc"] = oauth.oidc


def _provider() -> FlaskOAuth2App:
    client = current_app.extensions.get("membership.oidc")
    if client is None:
        abort(404)
    return cast("FlaskOAuth2App", client)


@bp.get("/login")
def login() -> ResponseReturnValue:
    """To the identity provider (back to `next` afterwards); or the development form."""
    target = safe_next(request.args.get("next"))
    if settings().oidc is not None:
        session[NEXT_KEY] = target
        return _provider().authorize_redirect(redirect_uri=f"{settings().public_url}/auth/callback")
    if settings().development_sign_in:
        return render_template("dev_login.html", next=target)
    return render_template("sign_in_unavailable.html"), 503


@bp.post("/login")
def development_login() -> ResponseReturnValue:
    """The development form: whoever you say you are. Only on a server nobody else can reach."""
    if not settings().development_sign_in:
        abort(404)
    email, name = request.form.get("email", "").strip(), " ".join(request.form.get("name", "").split())
    try:
        address = validate_email(email)
        user = Actor(DEVELOPMENT_PREFIX + address, address, name)
        check_actor(user)
        person_name(user)
    except InvalidValueError as error:
        return render_template("dev_login.html", next=safe_next(request.form.get("next")), error=error.message,
                               email=email, name=name), 422  # fmt: skip
    sign_in(user)
    return redirect(safe_next(request.form.get("next")), 303)


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    """The provider sends the person back: check state, nonce and the ID token (authlib), then sign in."""
    provider = _provider()
    target = session.pop(NEXT_KEY, None)
    # authlib keeps the provider's key set and fetches it again only for a token naming an unknown `kid`; a token
    # naming none, signed after a key rotation, would then fail. One fetch per sign-in follows every rotation.
    provider.server_metadata.pop("jwks", None)
    try:
        token = provider.authorize_access_token()
    except OAuthError as error:
        return render_template("sign_in_failed.html", reason=error.description or error.error), 400
    except JoseError as error:  # the ID token itself: its signature, issuer, audience, expiry or nonce
        log.warning("refused an ID token: %s", error)
        return render_template("sign_in_failed.html", reason=f"its ID token is not valid ({error.error})"), 400
    claims = token.get("userinfo") or {}
    user = _user_from(claims)
    if user is None:
        return render_template("sign_in_failed.html", reason="the provider's answer has no usable identity"), 400
    sign_in(user)
    return redirect(safe_next(target), 303)


def _user_from(claims: dict[str, Any]) -> Actor | None:
    """The person the ID token names, if its claims obey the rules for stored text."""
    sub, email, name = claims.get("sub"), claims.get("email") or "", claims.get("name") or ""
    verified = claims.get("email_verified")
    if not isinstance(sub, str) or not sub or sub.startswith(DEVELOPMENT_PREFIX):
        return None
    if not isinstance(email, str) or not isinstance(name, str):
        return None
    user = Actor(sub, email.strip(), " ".join(name.split()), verified if isinstance(verified, bool) else None)
    try:
        check_actor(user)
        person_name(user)
    except InvalidValueError:
        return None
    return user


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out here, then at the provider when it offers RP-initiated logout; then to `next`."""
    target = safe_next(request.form.get("next"), url_for("signin.signed_out"))
    sign_out()
    oidc = settings().oidc
    if oidc is None:
        return redirect(target, 303)
    provider = _provider()
    if not provider.load_server_metadata().get("end_session_endpoint"):
        return redirect(target, 303)
    session[NEXT_KEY] = target
    return provider.logout_redirect(
        post_logout_redirect_uri=f"{settings().public_url}/auth/signed-out", client_id=oidc.client_id
    )


@bp.get("/signed-out")
def signed_out() -> ResponseReturnValue:
    target = session.pop(NEXT_KEY, None)
    if target:
        return redirect(safe_next(target), 303)
    return render_template("signed_out.html")


@bp.get("/account")
def account() -> ResponseReturnValue:
    """Who is signed in (where signing in lands when it was not on the way to a page)."""
    user = signed_in_user()
    if user is None:
        return redirect(url_for("signin.login", next=url_for("signin.account")), 303)
    return render_template("account.html", user=user)
