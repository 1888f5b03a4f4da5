"""Development conveniences: mint tokens, and a ready demo organization for `./scripts/serve`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from uuid import UUID

import jwt

from membership import Actor
from membership.database import ConfigurationError
from membership.organization import system_role_id
from membership.permissions import VIEWER
from projections import members as members_reads
from projections.engine import store
from service.bootstrap import Services
from service.settings import Settings

DEMO_OWNER = Actor("demo-owner", "owner@demo.example", "Demo Owner")
DEMO_FILE = "demo.json"


def mint_token(
    settings: Settings, sub: str, email: str, name: str = "", org: str | None = None, ttl_s: int = 3600
) -> str:
    """An HS256 token signed with the configured secret (development and tests only)."""
    verification = settings.token_verification()
    if verification.algorithms != ("HS256",):
        raise ConfigurationError("minting tokens needs MEMBERSHIP_JWT_SECRET (HS256); RS256 keys are for verifying")
    claims: dict[str, object] = {"sub": sub, "email": email, "exp": int(time.time()) + ttl_s, "iat": int(time.time())}
    if name:
        claims["name"] = name
    if org:
        claims["org_id"] = org
    if verification.issuer:
        claims["iss"] = verification.issuer
    if verification.audience:
        claims["aud"] = verification.audience
    return jwt.encode(claims, verification.key, algorithm="HS256")


def ensure_demo_organization(services: Services) -> UUID:
    """The demo organization, created on first start and remembered in var/demo.json."""
    path = services.settings.database.var_dir / DEMO_FILE
    if path.exists():
        organization_id = UUID(json.loads(path.read_text())["organizationId"])
        if members_reads.get_organization(services.read_db, organization_id) is not None:
            return organization_id
    receipt = services.organizations.create_organization(DEMO_OWNER, "Demo Organization")
    if services.runner is not None:
        services.runner.catch_up()
    else:
        store.wait_for(services.read_db, receipt.position)
    Path(path).write_text(json.dumps({"organizationId": str(receipt.organization_id)}))
    return receipt.organization_id


def welcome(settings: Settings, organization_id: UUID, base_url: str) -> str:
    """What `./scripts/serve` prints: an Owner token and three requests to try."""
    token = mint_token(settings, DEMO_OWNER.user_id, DEMO_OWNER.email, DEMO_OWNER.name, ttl_s=7 * 24 * 3600)
    outbox = "" if settings.smtp.host else f" are written to {settings.database.var_dir / 'outbox'}"
    auth = '-H "Authorization: Bearer $TOKEN" -H "X-Organization-Id: $ORG"'
    return f"""
Demo organization ready; you are its Owner (token valid 7 days). Paste these into a shell:

  export TOKEN={token}
  export ORG={organization_id}
  export VIEWER={system_role_id(organization_id, VIEWER.key)}

  curl -s {base_url}/api/members {auth}
  curl -s {base_url}/api/roles {auth}
  curl -s -X POST {base_url}/api/members/invite {auth} -H "Content-Type: application/json" \\
       -d '{{"email": "developer@example.com", "roleId": "'$VIEWER'"}}'

More tokens: .venv/bin/membership token --sub USER_ID --email EMAIL [--org ORG]
API description: {base_url}/api/openapi.json
Invitation e-mails{outbox}: their links open the accept page, where you sign in
(development sign-in: {base_url}/auth/login) and accept.
"""
