"""The write side: one method per use case on `Organization` aggregates.

Every command loads the organization, calls one domain method and saves. A
concurrent write by another process surfaces as `IntegrityError`; the command
is then re-loaded, re-decided and re-saved, so no update is ever lost.

Cost does not grow with the organization: aggregates are cached without the
library's per-command deep copy (commands on one organization are serialised
by a lock, and a failed command evicts its possibly half-changed copy), and
snapshots are taken from the saved object rather than by replaying it again.

One module of ~500 lines on purpose: it is the application's whole surface, one short method
per use case (about thirty), and splitting one `Application` class across modules would hide
the use cases rather than shorten them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import AggregateRecorder, EventStore, IntegrityError, JSONTranscoder, Mapper, Recording

from membership import exceptions as err
from membership import previews, state
from membership.combining import GroupCommit, Pending
from membership.inputs import DEFAULT_EXPIRES_IN_DAYS, Actor
from membership.jobs import ROLE_CHANGE, BulkJob, IdempotencyKeyReusedError, JobNotFoundError, job_id_for
from membership.organization import Organization
from membership.permissions import MANAGE_MEMBERS
from membership.persistence import SnapshotCompressor
from membership.personal_data import PersonalDataMapper, PersonalEventStore, PersonalKeys, SealedTranscoding
from membership.tokens import INVITATION, INVITE_LINK, ParsedToken, TokenSigner, new_nonce

# Jitter and housekeeping draws from a generator of its own: the module-level one is shared state that
# other code (a test's Hypothesis, which checks it is untouched while it draws) may rely on.
_RANDOM = random.Random()  # noqa: S311 -- not for secrets

log = logging.getLogger(__name__)
LOCK_STRIPES = 256
MAILER = Actor("system:mailer", "", "Mailer")  # the actor of e-mail outcome events
T = TypeVar("T")
MAX_ATTEMPTS = 30
TOO_FAST = "The organization is changing too fast; please try again."


def utc_now() -> datetime:
    return datetime.now(UTC)


def project_organization(org: Organization | None, events: Iterable[Any]) -> Organization | None:
    """The library's projector without its per-event Protocol isinstance check (most of replay time)."""
    for event in events:
        org = event.mutate(org)
    return org


@dataclass(frozen=True)
class EmailOutcome:
    """What became of the e-mail for one invitation token: sent, or `failure` says why not."""

    invitation_id: UUID
    token_nonce: str
    message_id: str
    failure: str = ""


@dataclass(frozen=True)
class _Command:
    """A command as `Organizations._update` runs it (in a group: membership.combining)."""

    decide: Callable[[Organization], Any]
    subject_id: UUID | None
    missing: type[err.MembershipError]


@dataclass(frozen=True)
class Receipt:
    """What a command did: where it landed in the event log, and what it made."""

    organization_id: UUID
    position: int | None  # notification id of its last event; None when nothing changed
    id: UUID | None = None  # the member, invitation, link or role concerned
    secret: str | None = None  # an invitation token or link code, to hand over once


class Organizations(Application[UUID]):
    """Team management for every organization (tenant)."""

    name = "Organizations"
    env = {"AGGREGATE_CACHE_MAXSIZE": "100", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}
    snapshotting_intervals = {Organization: 500}  # jobs are short-lived: never snapshotted
    snapshotting_projectors = {Organization: project_organization}

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        secret_key: bytes | None = None,
        clock: Callable[[], datetime] = utc_now,
        snapshot_interval: int | None = None,
        max_pending_invitations: int = 1000,
        snapshot_in_commands: bool = True,
        personal_keys: PersonalKeys | None = None,
        snapshot_recorder: Callable[[AggregateRecorder], AggregateRecorder] | None = None,
    ) -> None:
        # Personal fields of events are sealed per person with these keys (membership.personal_data); read
        # by construct_mapper and register_transcodings, which the library's __init__ calls.
        self.personal_keys = personal_keys
        # The composition root may read snapshots its own way (service.postgres_snapshots: in binary).
        self._snapshot_recorder = snapshot_recorder
        super().__init__(env)
        if personal_keys is not None:
            personal_keys.bind(self.recorder.datastore)  # type: ignore[attr-defined]
        self.signer = TokenSigner(secret_key or new_nonce().encode())
        self.clock = clock
        self.max_pending_invitations = max_pending_invitations
        self.snapshot_interval = snapshot_interval or self.snapshotting_intervals[Organization]
        # The service turns this off and lets the worker snapshot (workers.snapshots): a
        # snapshot of a huge organization would stall the command that happens to cross the interval.
        self.snapshot_in_commands = snapshot_in_commands
        self._locks = [threading.RLock() for _ in range(LOCK_STRIPES)]  # re-entrant: reading() may nest
        self._commands: GroupCommit[_Command] = GroupCommit(self._run_group)
        self.conflicts_retried = 0  # commands re-run after another process wrote first
        self.save_listeners: list[Callable[[int], None]] = []  # e.g. wakes an in-process projection runner
        # Held around each command beside the in-process lock: where several processes write, one that
        # serialises an organization's commands across them turns a conflict (evict, reload, decide again)
        # into a short wait. The composition root supplies it (service.bootstrap); none by default.
        self.exclusive_across_processes: Callable[[UUID], AbstractContextManager[object]] = _no_lock

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """The organization's state records too, so snapshots can hold them; and sealed personal data."""
        super().register_transcodings(transcoder)
        state.register_transcodings(transcoder)
        transcoder.register(SealedTranscoding(self.personal_keys))  # without keys, sealed values read as erased

    def construct_event_store(self) -> EventStore[UUID]:
        """With sealed personal data, one that unwraps the keys a replay needs in one query (PersonalEventStore)."""
        if self.personal_keys is None:
            return super().construct_event_store()
        return PersonalEventStore(mapper=self.mapper, recorder=self.recorder)

    def construct_snapshot_store(self) -> EventStore[UUID]:
        """Snapshots in a store of their own kind: compressed (SnapshotCompressor), encrypted as events are."""
        mapper = type(self.mapper)(self.mapper.transcoder, cipher=self.mapper.cipher, compressor=SnapshotCompressor())
        if self.personal_keys is not None:
            mapper.keys = self.personal_keys  # type: ignore[attr-defined]
        recorder = self.factory.aggregate_recorder(purpose="snapshots")
        if self._snapshot_recorder is not None:
            recorder = self._snapshot_recorder(recorder)
        return self.factory.event_store(mapper=mapper, recorder=recorder)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        if self.personal_keys is not None:  # the new people's keys in one transaction, not one each
            self.personal_keys.prepare(processing_event.events)
        return super()._record(processing_event)

    def construct_mapper(self) -> Mapper[UUID]:
        if self.personal_keys is None:
            return super().construct_mapper()
        mapper = self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=PersonalDataMapper)
        mapper.keys = self.personal_keys  # type: ignore[attr-defined]
        return mapper

    # -- organizations -------------------------------------------------------
    def create_organization(self, actor: Actor, name: str) -> Receipt:
        """A new organization; `actor` becomes its only member, the Owner."""
        org = Organization.create(uuid4(), name, actor, uuid4(), self.clock())
        return Receipt(org.id, self._position(self.save(org)), org.id)

    def rename_organization(self, organization_id: UUID, actor: Actor, name: str) -> Receipt:
        """A new name (manage:settings); nothing is recorded when it is the same name."""
        return self._update(organization_id, lambda org: org.rename(actor, name, self.clock()), organization_id)

    def delete_organization(self, organization_id: UUID, actor: Actor) -> Receipt:
        """The Owner deletes the organization: no one is a member any more; its history stays."""
        return self._update(organization_id, lambda org: org.delete(actor, self.clock()), organization_id)

    def get_organization(self, organization_id: UUID) -> Organization:
        """A private copy of the current state (costly for huge organizations)."""
        with self.reading(organization_id) as org:
            return deepcopy(org)

    @contextmanager
    def reading(
        self, organization_id: UUID, missing: type[err.MembershipError] = err.NotAMemberError
    ) -> Iterator[Organization]:
        """The current state, shared and read-only, for the duration of the block.

        Commands on the organization wait until the block ends: keep it short.
        """
        with self._lock(organization_id):
            yield self._get(organization_id, missing)

    def organization_at(self, organization_id: UUID, version: int) -> Organization:
        """The state as it was after `version` events (temporal query)."""
        return self.repository.get(organization_id, version=version, projector_func=project_organization)

    # -- invitations ---------------------------------------------------------
    def invite_member(
        self,
        organization_id: UUID,
        actor: Actor,
        email: str,
        role_id: UUID,
        expires_in_days: int = DEFAULT_EXPIRES_IN_DAYS,
    ) -> Receipt:
        """Invites an e-mail address; the receipt's `secret` is the accept token."""
        invitation_id, nonce = uuid4(), new_nonce()
        receipt = self._update(
            organization_id,
            lambda org: org.invite_member(
                actor, invitation_id, email, role_id, nonce, self.clock(), expires_in_days, self.max_pending_invitations
            ),
            invitation_id,
        )
        return self._with_secret(receipt, INVITATION, nonce)

    def resend_invitation(
        self, organization_id: UUID, actor: Actor, invitation_id: UUID, expires_in_days: int | None = None
    ) -> Receipt:
        """A new token and expiry; the previous token stops working."""
        nonce = new_nonce()
        receipt = self._update(
            organization_id,
            lambda org: org.resend_invitation(actor, invitation_id, nonce, self.clock(), expires_in_days),
            invitation_id,
        )
        return self._with_secret(receipt, INVITATION, nonce)

    def cancel_invitation(self, organization_id: UUID, actor: Actor, invitation_id: UUID) -> Receipt:
        return self._update(
            organization_id, lambda org: org.cancel_invitation(actor, invitation_id, self.clock()), invitation_id
        )

    def accept_invitation(self, user: Actor, token: str) -> Receipt:
        """Joins the organization the token belongs to; the receipt's `id` is the new member id."""
        parsed = self._parse_invitation_token(token)
        member_id = uuid4()

        def accept(org: Organization) -> None:
            invitation = self._invitation_of(org, parsed)
            org.accept_invitation(user, invitation.id, member_id, self.clock())

        return self._update(parsed.organization_id, accept, member_id, missing=err.InvalidInvitationTokenError)

    def preview_invitation(self, token: str, viewer: Actor | None = None) -> previews.InvitationPreview:
        """What the invitation offers and its status, for its holder (`viewer`: who is looking, if signed in).
        Refuses a token that is not valid, or that a resend replaced, as accepting would."""
        parsed = self._parse_invitation_token(token)
        with self.reading(parsed.organization_id, missing=err.InvalidInvitationTokenError) as org:
            return previews.of_invitation(org, self._invitation_of(org, parsed), self.clock(), viewer)

    def _parse_invitation_token(self, token: str) -> ParsedToken:
        parsed = self.signer.parse(token)
        if parsed is None:
            raise err.InvalidInvitationTokenError("This invitation token is not valid.")
        return parsed

    def _invitation_of(self, org: Organization, parsed: ParsedToken) -> state.Invitation:
        """The invitation the token unlocks; a token replaced by a resend is told so, any other is not valid."""
        invitation = org.invitations.get(state.key_of(parsed.item_id))
        if invitation is None:
            raise err.InvalidInvitationTokenError("This invitation token is not valid.")
        if self.signer.verify(INVITATION, parsed, invitation.token_nonce):
            org.check_not_deleted()  # told only to a genuine token's holder
            return invitation
        if any(self.signer.verify(INVITATION, parsed, nonce) for nonce in invitation.earlier_nonces):
            raise err.InvitationReplacedError(
                "This invitation was sent again with a new link: use the link in the most recent e-mail."
            )
        raise err.InvalidInvitationTokenError("This invitation token is not valid.")

    def invitation_token(self, organization_id: UUID, invitation_id: UUID) -> str:
        """The current accept token of an invitation (for the mailer)."""
        with self.reading(organization_id) as org:
            nonce = org.get_invitation(invitation_id).token_nonce
        return self.signer.derive(INVITATION, organization_id, invitation_id, nonce)

    def record_invitation_emails(self, organization_id: UUID, outcomes: Sequence[EmailOutcome]) -> list[UUID]:
        """Record what became of the e-mails of one organization's invitation tokens (by the mailer), in one
        save: a round of the mailer writes once per organization, not once per message. Returns the
        invitations refused (gone from the organization): their outcome can never be recorded."""
        refused: list[UUID] = []

        def record(org: Organization) -> None:
            refused.clear()  # a retry after a concurrent write decides again from the fresh state
            now = self.clock()
            for outcome in outcomes:
                try:
                    org.record_invitation_email(
                        MAILER, outcome.invitation_id, outcome.token_nonce, outcome.message_id, now, outcome.failure
                    )
                except err.MembershipError:
                    refused.append(outcome.invitation_id)

        self._update(organization_id, record)
        return refused

    def record_skipped_event(
        self, organization_id: UUID, operator: str, projection: str, position: int, event_type: str, reason: str
    ) -> Receipt:
        """An operator had `projection` skip the event at `position` (see projections.engine.parking)."""
        actor = Actor(f"operator:{operator}", "", operator)
        return self._update(
            organization_id,
            lambda org: org.record_event_skipped(actor, projection, position, event_type, reason, self.clock()),
        )

    def erase_person(
        self, organization_id: UUID, operator: str, pseudonym: str, address: str, user_ids: Iterable[str]
    ) -> Receipt:
        """Record in this organization that an operator erased the person at `address` (see
        membership.personal_data: their key, `pseudonym`, is deleted right after)."""
        actor = Actor(f"operator:{operator}", "", operator)
        return self._update(
            organization_id, lambda org: org.erase_person(actor, pseudonym, address, user_ids, self.clock())
        )

    # -- invite links --------------------------------------------------------
    def create_invite_link(
        self,
        organization_id: UUID,
        actor: Actor,
        role_id: UUID,
        max_uses: int = 0,
        expires_in_days: int = DEFAULT_EXPIRES_IN_DAYS,
    ) -> Receipt:
        """A shareable link; the receipt's `secret` is its code."""
        link_id, nonce = uuid4(), new_nonce()
        receipt = self._update(
            organization_id,
            lambda org: org.create_invite_link(actor, link_id, role_id, nonce, self.clock(), max_uses, expires_in_days),
            link_id,
        )
        return self._with_secret(receipt, INVITE_LINK, nonce)

    def delete_invite_link(self, organization_id: UUID, actor: Actor, link_id: UUID) -> Receipt:
        return self._update(organization_id, lambda org: org.delete_invite_link(actor, link_id, self.clock()), link_id)

    def accept_invite_link(self, user: Actor, code: str) -> Receipt:
        """Joins by link; the receipt's `id` is the new member id."""
        parsed = self._parse_link_code(code)
        member_id = uuid4()

        def redeem(org: Organization) -> None:
            org.redeem_invite_link(user, self._link_of(org, parsed).id, member_id, self.clock())

        return self._update(parsed.organization_id, redeem, member_id, missing=err.InvalidInviteLinkCodeError)

    def preview_invite_link(self, code: str, viewer: Actor | None = None) -> previews.InviteLinkPreview:
        """What the invite link offers and its status (`viewer`: who is looking, if signed in)."""
        parsed = self._parse_link_code(code)
        with self.reading(parsed.organization_id, missing=err.InvalidInviteLinkCodeError) as org:
            return previews.of_invite_link(org, self._link_of(org, parsed), self.clock(), viewer)

    def _parse_link_code(self, code: str) -> ParsedToken:
        parsed = self.signer.parse(code)
        if parsed is None:
            raise err.InvalidInviteLinkCodeError("This invite link code is not valid.")
        return parsed

    def _link_of(self, org: Organization, parsed: ParsedToken) -> state.InviteLink:
        link = org.links.get(state.key_of(parsed.item_id))
        if link is None or not self.signer.verify(INVITE_LINK, parsed, link.code_nonce):
            raise err.InvalidInviteLinkCodeError("This invite link code is not valid.")
        org.check_not_deleted()
        return link

    def invite_link_codes(self, organization_id: UUID) -> dict[UUID, str]:
        """The code of every invite link of the organization (for listing them to admins)."""
        with self.reading(organization_id) as org:
            nonces = {link.id: link.code_nonce for link in org.links.values()}
        return {link_id: self.signer.derive(INVITE_LINK, organization_id, link_id, n) for link_id, n in nonces.items()}

    def invite_link_code(self, organization_id: UUID, link_id: UUID) -> str:
        with self.reading(organization_id) as org:
            nonce = org.get_invite_link(link_id).code_nonce
        return self.signer.derive(INVITE_LINK, organization_id, link_id, nonce)

    # -- members -------------------------------------------------------------
    def change_role(self, organization_id: UUID, actor: Actor, member_id: UUID, role_id: UUID) -> Receipt:
        return self._update(
            organization_id, lambda org: org.change_role(actor, member_id, role_id, self.clock()), member_id
        )

    def remove_member(self, organization_id: UUID, actor: Actor, member_id: UUID) -> Receipt:
        return self._update(organization_id, lambda org: org.remove_member(actor, member_id, self.clock()), member_id)

    def leave(self, organization_id: UUID, actor: Actor) -> Receipt:
        return self._update(organization_id, lambda org: org.leave(actor, self.clock()))

    def transfer_ownership(self, organization_id: UUID, actor: Actor, member_id: UUID) -> Receipt:
        return self._update(
            organization_id, lambda org: org.transfer_ownership(actor, member_id, self.clock()), member_id
        )

    # -- roles ---------------------------------------------------------------
    def create_role(
        self, organization_id: UUID, actor: Actor, name: str, description: str, permissions: list[str]
    ) -> Receipt:
        role_id = uuid4()
        return self._update(
            organization_id,
            lambda org: org.create_role(actor, role_id, name, description, permissions, self.clock()),
            role_id,
        )

    def update_role(
        self,
        organization_id: UUID,
        actor: Actor,
        role_id: UUID,
        name: str | None = None,
        description: str | None = None,
        permissions: list[str] | None = None,
    ) -> Receipt:
        return self._update(
            organization_id,
            lambda org: org.update_role(actor, role_id, self.clock(), name, description, permissions),
            role_id,
        )

    def delete_role(self, organization_id: UUID, actor: Actor, role_id: UUID) -> Receipt:
        return self._update(organization_id, lambda org: org.delete_role(actor, role_id, self.clock()), role_id)

    # -- bulk jobs -----------------------------------------------------------
    def request_bulk_job(
        self,
        organization_id: UUID,
        actor: Actor,
        job_type: str,
        member_ids: list[UUID],
        role_id: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Receipt, bool]:
        """Queue a bulk role change or removal; returns the job's receipt and whether it is new.

        With an idempotency key, a retried request returns the job the first one made.
        """
        with self.reading(organization_id) as org:
            manager = org.check_permission(actor, MANAGE_MEMBERS)
            if role_id is not None:
                org.check_can_assign(manager, role_id)
        job_id = job_id_for(organization_id, actor.user_id, idempotency_key) if idempotency_key else uuid4()
        job = BulkJob.request(job_id, organization_id, actor, job_type, member_ids, role_id, self.clock())
        try:
            return Receipt(organization_id, self._position(self.save(job)), job_id), True
        except IntegrityError:
            existing = self.get_job(organization_id, job_id)
            if existing.fingerprint != job.fingerprint:
                raise IdempotencyKeyReusedError("This Idempotency-Key was used for a different request.") from None
            return Receipt(organization_id, None, job_id), False

    def get_job(self, organization_id: UUID, job_id: UUID) -> BulkJob:
        try:
            job: BulkJob = self.repository.get(job_id)
        except AggregateNotFoundError:
            job = None  # type: ignore[assignment]
        if not isinstance(job, BulkJob) or job.organization_id != organization_id:
            raise JobNotFoundError(f"No job {job_id} in this organization.")
        return job

    def cancel_job(self, organization_id: UUID, actor: Actor, job_id: UUID) -> Receipt:
        """Stop the job after the batch in progress."""

        def cancel() -> Receipt:
            self._get(organization_id).check_permission(actor, MANAGE_MEMBERS)
            job = self.get_job(organization_id, job_id)
            with self._evicted_on_failure(job_id):
                job.cancel(actor, self.clock())
                return Receipt(organization_id, self._position(self.save(job)), job_id)

        return self._retrying(organization_id, cancel, "The job is changing too fast; please try again.")

    def process_job_batch(self, job_id: UUID, batch_size: int = 500) -> BulkJob:
        """Apply the job's next items and record them on the job, in one transaction."""
        organization_id: UUID = self.repository.get(job_id).organization_id

        def process() -> BulkJob:
            job: BulkJob = self.repository.get(job_id)
            if job.is_finished:
                return job
            org = self._get(organization_id)
            with self._evicted_on_failure(org.id, job_id):
                self._run_batch(org, job, batch_size)
                self.save(org, job)
            return job

        return self._retrying(organization_id, process, "The organization is changing too fast to process the job.")

    def _run_batch(self, org: Organization, job: BulkJob, batch_size: int) -> None:
        now = self.clock()
        if not job.cancel_requested:
            actor = Actor(job.actor_id, job.actor_email)
            job.record_batch([self._apply_item(org, job, actor, item, now) for item in job.next_items(batch_size)], now)
        if job.cancel_requested or job.processed >= job.total:
            job.finish(now)

    @staticmethod
    def _apply_item(org: Organization, job: BulkJob, actor: Actor, member_id: str, now: datetime) -> list[str]:
        """One item, by exactly the rules of the single operation; a refusal fails only this item."""
        if org.member_by_user.get(actor.user_id) == member_id:
            return [
                member_id,
                "failed",
                "cannot_modify_yourself",
                "A bulk operation skips the member who requested it.",
            ]
        try:
            if job.job_type == ROLE_CHANGE:
                assert job.role_id is not None
                org.change_role(actor, UUID(member_id), UUID(job.role_id), now)
            else:
                org.remove_member(actor, UUID(member_id), now)
        except err.MembershipError as error:
            return [member_id, "failed", error.code, error.message]
        return [member_id, "succeeded", "", ""]

    # -- machinery -----------------------------------------------------------
    def _update(
        self,
        organization_id: UUID,
        decide: Callable[[Organization], Any],
        subject_id: UUID | None = None,
        missing: type[err.MembershipError] = err.NotAMemberError,
    ) -> Receipt:
        """Load, decide, save; on a concurrent write, start again from a fresh load. Commands arriving on the
        organization meanwhile are decided on the same state and saved with it (membership.combining).

        `missing` is raised for an unknown organization: to a caller who is not a
        member it must look exactly like an organization they do not belong to.
        """
        receipt: Receipt = self._commands.submit(organization_id, _Command(decide, subject_id, missing))
        return receipt

    def _run_group(self, organization_id: Hashable, group: list[Pending[_Command]]) -> None:
        """Answer every command of the group: each is decided in turn on one state and their events saved in
        one transaction; a refused command is answered alone. One whose failure leaves the state half-changed
        is answered, the state dropped, and the others decided again from a fresh load."""
        assert isinstance(organization_id, UUID)
        remaining = group
        while remaining:
            answers = self._retrying(organization_id, partial(self._decide_group, organization_id, remaining), TOO_FAST)
            for pending, answer in answers:
                if isinstance(answer, BaseException):
                    pending.fail(answer)
                else:
                    pending.succeed(answer)
            remaining = [pending for pending in remaining if not pending.answered]

    def _decide_group(
        self, organization_id: UUID, group: list[Pending[_Command]]
    ) -> list[tuple[Pending[_Command], Receipt | BaseException]]:
        """One attempt at the group; the answers are given only once its events are saved."""
        try:
            org = self.repository.get(organization_id, projector_func=project_organization)
        except AggregateNotFoundError:
            return [(p, p.work.missing("You are not a member of this organization.")) for p in group]
        answers: list[tuple[Pending[_Command], Receipt | BaseException]] = []
        decided = []
        for pending in group:
            before = len(org.pending_events)
            try:
                outcome = pending.work.decide(org)
            except Exception as error:
                if isinstance(error, err.MembershipError) and len(org.pending_events) == before:
                    answers.append((pending, error))  # refused before it changed anything
                    continue
                self._evict(org.id)  # the shared state is half-changed: drop it
                return [(pending, error)]
            except BaseException:
                self._evict(org.id)
                raise
            decided.append((pending, outcome, before, len(org.pending_events)))
        try:
            recordings = self.save(org)
        except BaseException:
            self._evict(org.id)  # the cached object holds events that were not saved
            raise
        for pending, outcome, first, end in decided:
            position = recordings[end - 1].notification.id if end > first else None
            subject_id = outcome if isinstance(outcome, UUID) else pending.work.subject_id
            answers.append((pending, Receipt(organization_id, position, subject_id)))
        return answers

    def _retrying(self, organization_id: UUID, attempt: Callable[[], T], too_fast: str) -> T:
        """The one unit-of-work loop: run `attempt` under the organization's lock; when another process
        wrote first (the store refuses the save), run it again from a fresh load after a short random pause."""
        for n in range(MAX_ATTEMPTS):
            try:
                with self._lock(organization_id), self.exclusive_across_processes(organization_id):
                    return attempt()
            except IntegrityError:
                self.conflicts_retried += 1
                time.sleep(_RANDOM.uniform(0, 0.002 * (n + 1)))
        raise err.ConflictError(too_fast)

    @contextmanager
    def _evicted_on_failure(self, *aggregate_ids: UUID) -> Iterator[None]:
        """Cached objects touched in the block are dropped if it fails: the next load re-reads the stored truth."""
        try:
            yield
        except BaseException:
            for aggregate_id in aggregate_ids:
                self._evict(aggregate_id)
            raise

    def _get(self, organization_id: UUID, missing: type[err.MembershipError] = err.NotAMemberError) -> Organization:
        try:
            return self.repository.get(organization_id, projector_func=project_organization)
        except AggregateNotFoundError:
            raise missing("You are not a member of this organization.") from None

    def _evict(self, organization_id: UUID) -> None:
        if self.repository.cache is not None:
            with suppress(KeyError):
                self.repository.cache.get(organization_id, evict=True)

    def _lock(self, organization_id: UUID) -> threading.RLock:
        return self._locks[organization_id.int % LOCK_STRIPES]

    def _with_secret(self, receipt: Receipt, kind: str, nonce: str) -> Receipt:
        assert receipt.id is not None
        secret = self.signer.derive(kind, receipt.organization_id, receipt.id, nonce)
        return Receipt(receipt.organization_id, receipt.position, receipt.id, secret)

    @staticmethod
    def _position(recordings: list[Any]) -> int | None:
        return recordings[-1].notification.id if recordings else None

    def _notify(self, recordings: list[Any]) -> None:
        """Tell in-process listeners the new last position, right after a save."""
        position = self._position(recordings)
        if position is not None:
            for listener in self.save_listeners:
                listener(position)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot the just-saved object itself (the library would replay it again).

        A snapshot is only an optimisation: failing to take one must never fail
        a command whose events are already committed.
        """
        if self.snapshots is None or not self.snapshot_in_commands:
            return
        for org in processing_event.aggregates.values():
            if not isinstance(org, Organization):
                continue
            new_versions = range(org.version - len(_events_of(processing_event, org.id)) + 1, org.version + 1)
            if any(version % self.snapshot_interval == 0 for version in new_versions):
                try:
                    self.snapshots.put([org.Snapshot.take(org)])
                except Exception:
                    log.exception("Could not snapshot organization %s at version %s", org.id, org.version)


def _events_of(processing_event: ProcessingEvent[UUID], aggregate_id: UUID) -> list[Any]:
    return [event for event in processing_event.events if event.originator_id == aggregate_id]


def _no_lock(organization_id: UUID) -> AbstractContextManager[object]:
    return nullcontext()
