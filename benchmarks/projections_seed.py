"""Seeding for `benchmarks.projections`: realistic organizations built through the domain, in memory,
with explicit times, interleaved in the log and saved many organizations per transaction."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from benchmarks.harness import Watchdog
from membership import exceptions as err
from membership.application import Organizations
from membership.inputs import Actor
from membership.organization import Organization, system_role_id
from membership.permissions import ADMIN, DEVELOPER, VIEWER
from membership.tokens import new_nonce

SEED_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


# -- seeding -------------------------------------------------------------------
@dataclass
class CommandTarget:
    """What the latency phase needs to send commands to a seeded organization."""

    id: UUID
    owner: Actor
    viewer_role_id: UUID


def owner_of(index: int) -> Actor:
    return Actor(f"owner-{index}", f"owner{index}@org{index}.bench.example", f"Owner {index}")


def organization_events(index: int, target_events: int, rng: random.Random) -> Iterator[Organization]:
    """One organization reaching `target_events` events (at least 2) through its commands, in memory.

    Yields the organization after each new event (the first time after the two of its
    creation), so that the caller can interleave many organizations in the log. The mix
    after set-up: ~30% invitations, ~22% acceptances, ~20% joins by link, ~14% role
    changes, ~5% removals, ~4% cancellations, ~2% departures, ~2% resends, ~1% role
    edits; an invitation found expired when it would be accepted is re-sent as a replacement.
    """
    now = SEED_EPOCH + timedelta(minutes=index)

    def tick() -> datetime:
        nonlocal now
        now += timedelta(seconds=rng.randint(30, 900))
        return now

    org_id = uuid4()
    owner = owner_of(index)
    org = Organization.create(org_id, f"Bench organization {index}", owner, uuid4(), now)
    yield org
    admin, developer, viewer = (system_role_id(org_id, role.key) for role in (ADMIN, DEVELOPER, VIEWER))
    roles = [admin, developer, viewer]
    custom: list[UUID] = []
    permission_sets = [["view:members", "view:projects"], ["manage:projects", "manage:deployments"], ["view:billing"]]
    for k in range(rng.randint(1, 3)):
        if org.version >= target_events:
            return
        role_id = uuid4()
        org.create_role(owner, role_id, f"Custom role {k}", "Made by the benchmark", permission_sets[k], tick())
        roles.append(role_id)
        custom.append(role_id)
        yield org
    if org.version >= target_events:
        return
    link_id = uuid4()
    org.create_invite_link(owner, link_id, viewer, new_nonce(), tick(), 0, 365)
    yield org
    members: list[tuple[UUID, Actor]] = []
    pending: list[tuple[UUID, Actor]] = []
    serial = 0

    def new_user() -> Actor:
        nonlocal serial
        serial += 1
        return Actor(f"user-{index}-{serial}", f"user{serial}@org{index}.bench.example", f"User {serial}")

    while org.version < target_events:
        version = org.version
        r = rng.random()
        try:
            if r < 0.30 or (r < 0.56 and not pending):
                user = new_user()
                invitation_id = uuid4()
                role = rng.choice(roles[1:])
                org.invite_member(owner, invitation_id, user.email, role, new_nonce(), tick(), 7, 10**6)
                pending.append((invitation_id, user))
            elif r < 0.52:
                invitation_id, user = pending.pop(0)
                at = tick()
                if at >= org.get_invitation(invitation_id).expires_at:  # expired: invite again (a replacement)
                    replacement = uuid4()
                    role = org.get_invitation(invitation_id).role_id
                    org.invite_member(owner, replacement, user.email, role, new_nonce(), at, 7, 10**6)
                    pending.append((replacement, user))
                else:
                    member_id = uuid4()
                    org.accept_invitation(user, invitation_id, member_id, at)
                    members.append((member_id, user))
            elif r < 0.56:
                invitation_id, _ = pending.pop(rng.randrange(len(pending)))
                org.cancel_invitation(owner, invitation_id, tick())
            elif r < 0.76:
                user = new_user()
                member_id = uuid4()
                org.redeem_invite_link(user, link_id, member_id, tick())
                members.append((member_id, user))
            elif r < 0.90 and members:
                member_id, _ = rng.choice(members)
                org.change_role(owner, member_id, rng.choice(roles[1:]), tick())
            elif r < 0.95 and members:
                member_id, _ = members.pop(rng.randrange(len(members)))
                org.remove_member(owner, member_id, tick())
            elif r < 0.97 and members:
                _, user = members.pop(rng.randrange(len(members)))
                org.leave(user, tick())
            elif r < 0.99 and pending:
                invitation_id, _ = rng.choice(pending)
                org.resend_invitation(owner, invitation_id, new_nonce(), tick())
            elif custom:
                org.update_role(owner, rng.choice(custom), tick(), description=f"Revision {org.version}")
        except err.MembershipError:
            pass  # the domain said no (e.g. the role is already that one): nothing was recorded
        if org.version > version:
            yield org


def seed(
    app: Organizations, total: int, per_org: int, chunk_events: int, active: int, rng: random.Random
) -> list[CommandTarget]:
    """`total` events in organizations of about `per_org` events, `active` of them growing at a time.

    Each transaction (`app.save(*organizations)`) holds ~`chunk_events` events: a random
    run of events from each active organization, so organizations interleave in the log
    as they do when many are in use at once.
    """
    print(
        f"seeding {total:,} events: organizations of ~{per_org} events, {active} growing at a time, "
        f"~{chunk_events:,} events per transaction"
    )
    seeded: list[CommandTarget] = []
    kinds: Counter[str] = Counter()
    made = planned = 0
    build_seconds = save_seconds = 0.0
    pool: list[tuple[Iterator[Organization], Organization]] = []
    started = last_print = time.perf_counter()
    while made < total:
        building = time.perf_counter()
        while len(pool) < active and planned < total:
            target = rng.randint(per_org * 4 // 5, per_org * 6 // 5)
            if total - planned - target < 2:  # the last organization takes the rest
                target = total - planned
            events = organization_events(len(seeded), target, rng)
            org = next(events)
            seeded.append(CommandTarget(org.id, owner_of(len(seeded)), system_role_id(org.id, VIEWER.key)))
            pool.append((events, org))
            planned += target
        share = max(1, chunk_events // len(pool))
        growing = []
        for events, org in pool:
            for _ in range(rng.randint(1, 2 * share)):
                if next(events, None) is None:
                    break
            else:
                growing.append((events, org))
        chunk = [org for _, org in pool]
        chunk_size = sum(len(org.pending_events) for org in chunk)
        kinds.update(type(e).__name__ for org in chunk for e in org.pending_events)
        saving = time.perf_counter()
        build_seconds += saving - building
        with Watchdog(120, f"app.save() of {len(chunk)} organizations ({chunk_size:,} events)"):
            app.save(*chunk)  # one transaction (plus snapshots where a version crosses the interval)
        save_seconds += time.perf_counter() - saving
        made += chunk_size
        pool = growing
        now = time.perf_counter()
        if now - last_print > 10 or made >= total:
            last_print = now
            print(
                f"  {made:>10,} events  {len(seeded):>6,} orgs  {now - started:6.1f} s  "
                f"{made / (now - started):8,.0f} events/s",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    print(
        f"seeded {made:,} events in {len(seeded):,} organizations in {elapsed:.1f} s ({made / elapsed:,.0f} events/s; "
        f"commands in memory {build_seconds:.1f} s, app.save() {save_seconds:.1f} s)"
    )
    print("event mix: " + ", ".join(f"{name} {count / made:.1%}" for name, count in kinds.most_common()))
    return seeded
