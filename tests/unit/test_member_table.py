"""`MemberTable`: the members as a snapshot's columns, each read into a record only when a command needs it.

A state machine against a plain dict: whatever is read, replaced, added or removed, in whatever order, the
table answers as the dict does, its indexes are the dict's, and a snapshot of it loads to the same members.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import JSONTranscoder
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from membership import Organizations
from membership.state import Member, MemberTable

ROLE_IDS = [uuid4() for _ in range(3)]
START = datetime(2030, 1, 1, tzinfo=UTC)


def member(n: int, role: int = 0) -> Member:
    """A distinct member for each `n`; its joined_at carries microseconds and an offset, as real ones do."""
    return Member(
        UUID(int=n + 1),
        f"user-{n}",
        f"p{n}@example.com",
        f"Person {n}",
        ROLE_IDS[role],
        START + timedelta(seconds=n, microseconds=n),
    )


def transcoder() -> JSONTranscoder:
    app = Organizations()
    app.close()
    assert isinstance(app.mapper.transcoder, JSONTranscoder)
    return app.mapper.transcoder


TRANSCODER = transcoder()


def round_trip(table: MemberTable) -> MemberTable:
    """What a snapshot of the table loads as: columns, nothing read."""
    loaded = TRANSCODER.decode(TRANSCODER.encode(table))
    assert isinstance(loaded, MemberTable)
    return loaded


class MemberTableMachine(RuleBasedStateMachine):
    """The table starts as a snapshot of a few members; the model is a dict of the same."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Member] = {str(m.id): m for m in (member(n, n % 3) for n in range(6))}
        self.table = round_trip(MemberTable(self.model))
        self.next = 6

    keys = st.integers(0, 40).map(lambda n: str(UUID(int=n + 1)))

    @rule(key=keys)
    def read(self, key: str) -> None:
        assert self.table.get(key) == self.model.get(key)
        assert (key in self.table) == (key in self.model)

    @rule(role=st.integers(0, 2))
    def add(self, role: int) -> None:
        new = member(self.next, role)
        self.next += 1
        self.table[str(new.id)] = self.model[str(new.id)] = new

    @precondition(lambda self: self.model)
    @rule(data=st.data(), role=st.integers(0, 2))
    def change_role(self, data: Any, role: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        changed = Member(*[*vars_of(self.model[key])[:4], ROLE_IDS[role], self.model[key].joined_at])
        self.table[key] = self.model[key] = changed

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data: Any) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.table.pop(key) == self.model.pop(key)

    @rule()
    def snapshot_and_load(self) -> None:
        self.table = round_trip(self.table)

    @rule()
    def read_all(self) -> None:
        assert self.table == self.model

    @invariant()
    def answers_as_the_dict(self) -> None:
        """Checked without reading any row of the table itself (that would leave it nothing unread to test)."""
        assert len(self.table) == len(self.model)
        assert sorted(self.table) == sorted(self.model)
        assert self.table.index("email") == {m.email: key for key, m in self.model.items()}
        assert self.table.index("user_id") == {m.user_id: key for key, m in self.model.items()}
        assert round_trip(self.table) == self.model  # a snapshot of it now: read rows and unread alike


def vars_of(record: Member) -> list[Any]:
    return [record.id, record.user_id, record.email, record.name, record.role_id, record.joined_at]


TestMemberTable = MemberTableMachine.TestCase
TestMemberTable.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


def test_a_loaded_table_makes_no_record_until_one_is_read() -> None:
    table = round_trip(MemberTable({str(m.id): m for m in (member(n) for n in range(1000))}))
    assert repr(table) == "MemberTable(1000 members, 0 read)"
    assert table[str(UUID(int=501))] == member(500)
    assert repr(table) == "MemberTable(1000 members, 1 read)"


def test_a_missing_member_is_a_key_error_as_in_a_dict() -> None:
    table = round_trip(MemberTable({str(member(0).id): member(0)}))
    assert table.get("nobody") is None and "nobody" not in table
    del table[str(member(0).id)]
    assert len(table) == 0 and table.get(str(member(0).id)) is None
