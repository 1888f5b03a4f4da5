"""`/api/operator/...`: what operators (not organization members) do over HTTP: erase a person.

Operators hold MEMBERSHIP_OPERATOR_TOKEN, sent as a bearer token; without the setting these answer 401 to
everyone. An erasure (service.privacy) answers once the read models are rebuilt without the person: on a
large store that takes as long as a rebuild, and `membership privacy erase` may suit better.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import request

from api.blueprint import Blueprint
from api.context import services
from api.errors import ApiError
from api.problems import answers
from api.schemas import ErasureRequestSchema, ErasureSchema
from membership import exceptions as err

blp = Blueprint("operator", __name__, url_prefix="/api/operator", description="Operators' commands")
OPERATOR_TOKEN_REQUIRED = {401: ("operator_token_required",)}


@blp.route("/erasures", methods=["POST"])
@answers(
    OPERATOR_TOKEN_REQUIRED, err.PersonNotFoundError, err.OwnerCannotBeErasedError, err.ErasureInProgressError,
    public=True,
)
@blp.arguments(ErasureRequestSchema)
@blp.response(200, ErasureSchema)
def erase_person(body: dict[str, Any]) -> Any:
    """Erase a person (GDPR Art. 17) by e-mail address or user id: see "Personal data and erasure" in the
    README. 409 while they own an organization; 404 when nothing of theirs is stored."""
    return services().erase_person(check_operator(), email_address=body.get("email"), user_id=body.get("userId"))


@blp.before_request
def _operators_only() -> None:
    """Before anything else of the request is looked at (its body too): nobody else learns more than 401."""
    check_operator()


def check_operator() -> str:
    """Who acts, once their token is checked: "api" (one shared token names no one in particular)."""
    expected = services().settings.operator_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401, "operator_token_required", "This needs the operators' token (MEMBERSHIP_OPERATOR_TOKEN) as a bearer token.",
            {"WWW-Authenticate": 'Bearer realm="operator"'},
        )  # fmt: skip
    return "api"
