"""One transient storage failure on the receiving side, at every write position.

The requirement under test: receiving is one transaction. Authenticate, authorise, store and
apply happen atomically: either the whole change is durable and applied, or nothing is and the
sender is told to retry. So one transient storage failure at *any single write* of the
receiver, followed by the sender's normal retries, must end with both sides showing the same
texts, deletions and reactions, and every message announced to listeners exactly once, also
when recording the announcement hits a locked database (and after a restart).

How the fault is injected (SQLite's, not a patch of syft-chat):

* ``sqlite3.connect`` is wrapped for the duration of a test so that the connection opened on
  *bob's* database file only (matched by path; alice's file, syft-rpc's own database and the
  read-only connections are untouched) is made with ``factory=FaultyConnection``. Its cursors
  count every data-changing statement (``INSERT`` / ``UPDATE`` / ``DELETE`` / ``REPLACE``;
  writes done by triggers, such as the full-text index, belong to the statement that fired
  them) and let every statement through to SQLite unchanged. No syft-chat or peewee function
  is replaced; the library runs its own code against a real SQLite file.
* For write number ``k`` (counted from the start of the conversation, in bob's background
  threads: serving requests, handling answers, announcing; the test's own calls on bob's API
  run on the main thread and are not counted, since a failure there is reported to the caller
  and is another contract), SQLite itself is made to fail that one statement, then every
  later statement runs normally again:

  - ``deny`` (the per-position test): an authorizer (``sqlite3.Connection.set_authorizer``)
    that answers ``SQLITE_DENY`` to the statement's write is installed for that one statement
    and removed right after. SQLite refuses to compile it and raises
    ``sqlite3.DatabaseError: not authorized``; nothing of the statement runs, and a statement
    earlier in the same transaction is left for the library to commit or roll back, as with
    any failed statement. The statement cache is no obstacle: installing an authorizer
    expires every prepared statement of the connection (SQLite's ``sqlite3_set_authorizer``),
    so the cached statement is prepared again, through the authorizer.
  - ``lock`` (the announcement test): right before that statement, a second, independent
    connection to the same file takes the write lock (``BEGIN IMMEDIATE``) and releases it
    after the statement. Bob's connection waits its busy timeout (``db_busy_timeout_ms``,
    small here) and SQLite raises ``sqlite3.OperationalError: database is locked``: a real
    lock held by another connection, as another process would hold it. This is only possible
    while bob's connection holds no write lock yet (true today for the ``notified`` update, a
    statement of its own); otherwise the authorizer fails the statement and a note says so.

Each position runs in a fresh workspace with fresh clients. A dry run first counts the
positions and checks that, without a fault, both sides agree after every step.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import ALICE, BOB, Workspace, wait_for

from syft_chat.interfaces import MessageQuery
from syft_chat.models import Direction

_real_connect = sqlite3.connect  # kept before any test wraps it
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_NOTIFIED = re.compile(r'^\s*UPDATE\b.*\bSET\b.*\b"?notified"?\s*=', re.IGNORECASE | re.DOTALL)
_WRITE_ACTIONS = (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE)

# fast retries; bob's busy timeout is short so that a held lock fails his write quickly
FAST: dict[str, Any] = {
    "retry_initial": 0.2,
    "retry_max": 1.0,
    "send_timeout": 5.0,
    "startup_hold": 0.0,
    "db_busy_timeout_ms": 100,
}
SETTLE_TIMEOUT = 10.0


# --------------------------------------------------------------------------- the fault


@dataclass
class Write:
    """One data-changing statement on bob's connection."""

    n: int
    thread: str
    step: str
    sql: str
    params: tuple[Any, ...]
    error: str | None = None

    def describe(self) -> str:
        sql = " ".join(self.sql.split())
        sql = sql if len(sql) <= 160 else sql[:157] + "..."
        return f"write {self.n} [{self.thread}, during {self.step!r}]: {sql}"


@dataclass
class FaultPlan:
    """Which write of bob's connection fails (``fail_at``, 1-based; ``None``: none) and how."""

    path: Path
    fail_at: int | None = None
    mode: str = "deny"  # or "lock"
    counting: bool = False
    step: str = "start-up"
    writes: list[Write] = field(default_factory=list)
    failed: Write | None = None
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, sql: str, params: Any) -> tuple[Write | None, bool]:
        """Count a write statement; return it and whether it is the one to fail."""
        with self.lock:
            if not self.counting or threading.current_thread() is threading.main_thread():
                return None, False
            write = Write(
                len(self.writes) + 1,
                threading.current_thread().name,
                self.step,
                sql,
                tuple(params) if isinstance(params, (list, tuple)) else (params,),
            )
            self.writes.append(write)
            fail = write.n == self.fail_at
            if fail:
                self.failed = write
            return write, fail

    def errors(self) -> list[Write]:
        return [w for w in self.writes if w.error is not None]


def _deny_writes(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_DENY if action in _WRITE_ACTIONS else sqlite3.SQLITE_OK


class FaultyConnection(sqlite3.Connection):
    """A plain ``sqlite3.Connection`` whose cursors count writes (see the module docstring)."""

    plan: FaultPlan | None = None

    def cursor(self, factory: Any = None) -> Any:  # Connection.execute goes through here too
        return super().cursor(factory or FaultyCursor)


class FaultyCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._run(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self._run(super().executemany, sql, seq_of_parameters)

    def _run(self, run: Callable[[str, Any], Any], sql: str, parameters: Any) -> Any:
        conn = self.connection
        plan = getattr(conn, "plan", None)
        if plan is None or not _WRITE.match(sql):
            return run(sql, parameters)
        write, fail = plan.begin(sql, parameters)
        blocker = _hold_write_lock(plan) if fail and plan.mode == "lock" else None
        deny = fail and blocker is None  # deny mode, or the lock could not be held
        if deny:
            conn.set_authorizer(_deny_writes)  # expires cached statements: this one re-prepares
        try:
            return run(sql, parameters)
        except sqlite3.Error as exc:
            if write is not None:
                write.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if deny:
                conn.set_authorizer(None)
            if blocker is not None:
                blocker.rollback()
                blocker.close()


def _hold_write_lock(plan: FaultPlan) -> sqlite3.Connection | None:
    """Another connection takes the write lock of bob's file (``lock`` mode).

    Impossible if bob's connection already holds it (a transaction that wrote before this
    statement): then the statement is failed by the authorizer instead, and a note says so.
    """
    blocker = _real_connect(plan.path, isolation_level=None, timeout=0)
    try:
        blocker.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        blocker.close()
        plan.notes.append(
            f"could not hold the write lock for write {plan.fail_at} ({exc}): bob's own "
            "transaction holds it; the write was failed by the authorizer instead"
        )
        return None
    return blocker


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, FaultPlan], FaultPlan]:
    """``faults(db_path, plan)``: connections opened on ``db_path`` from now on follow ``plan``."""
    plans: dict[Path, FaultPlan] = {}

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        plan = None
        if isinstance(database, (str, Path)) and not str(database).startswith("file:"):
            plan = plans.get(Path(database).resolve())
        if plan is None or "factory" in kwargs:
            return _real_connect(database, *args, **kwargs)
        conn = _real_connect(database, *args, factory=FaultyConnection, **kwargs)
        conn.plan = plan
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)

    def install(path: Path, plan: FaultPlan) -> FaultPlan:
        plans[Path(path).resolve()] = plan
        return plan

    return install


# --------------------------------------------------------------------------- the conversation

TEXT_1 = "meet at nine"
TEXT_1_EDITED = "meet at ten"
TEXT_2 = "the zanzibar plans"  # its one rare word is looked for in bob's file after the delete
SECRET_WORD = "zanzibar"

Step = tuple[str, Callable[[Any, Any, dict[str, str]], Any]]

STEPS: list[Step] = [
    ("alice sends m1", lambda a, b, ids: ids.update(m1=a.send_message(BOB, TEXT_1).message_id)),
    ("alice sends m2", lambda a, b, ids: ids.update(m2=a.send_message(BOB, TEXT_2).message_id)),
    ("alice edits m1", lambda a, b, ids: a.edit_message(ids["m1"], TEXT_1_EDITED)),
    ("alice reacts 👍 to m1", lambda a, b, ids: a.react(ids["m1"], "👍")),
    ("alice reacts ❤️ to m2", lambda a, b, ids: a.react(ids["m2"], "❤️")),
    ("bob reacts 🎉 to m1", lambda a, b, ids: b.react(ids["m1"], "🎉")),
    ("alice reacts 👀 to m1", lambda a, b, ids: a.react(ids["m1"], "👀")),
    ("alice removes 👀 from m1", lambda a, b, ids: a.react(ids["m1"], "👀", remove=True)),
    ("alice deletes m2", lambda a, b, ids: a.delete_message(ids["m2"])),
]

View = dict[str, tuple[str, bool, dict[str, list[str]]]]

FINAL: View = {
    "m1": (TEXT_1_EDITED, False, {"👍": [ALICE], "🎉": [BOB]}),
    "m2": ("", True, {}),
}


def _view(client: Any, peer: str, ids: dict[str, str]) -> View:
    """``{m1/m2: (content, deleted, {emoji: users})}`` as ``client`` shows the conversation."""
    names = {msg_id: name for name, msg_id in ids.items()}
    return {
        names.get(m.msg_id, m.msg_id): (
            m.content,
            m.deleted,
            {emoji: sorted(users) for emoji, users in sorted(m.reactions.items())},
        )
        for m in client.get_chat_history(with_user=peer, limit=100)
    }


def _diff(left_name: str, left: View, right_name: str, right: View) -> str | None:
    lines = [
        f"{key}: {left_name} {left.get(key, 'missing')} != {right_name} {right.get(key, 'missing')}"
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]
    return "; ".join(lines) or None


def _settle(alice: Any, bob: Any, plan: FaultPlan, stuck: set[str]) -> str | None:
    """Wait for both outboxes to empty and bob to finish announcing; say what did not.

    Messages found not announced are added to ``stuck`` (reported once, not waited for again).
    """
    try:
        wait_for(
            lambda: not alice.pending_messages() and not bob.pending_messages(), SETTLE_TIMEOUT
        )
    except AssertionError:
        pending = [(m.kind, m.seq, m.status) for m in alice.pending_messages()]
        pending += [(m.kind, m.seq, m.status) for m in bob.pending_messages()]
        return f"outboxes not empty after {SETTLE_TIMEOUT:g}s: {pending}"
    failed = plan.failed
    if failed is not None and _NOTIFIED.search(failed.sql):
        stuck.update(str(p) for p in failed.params)  # that one's record is the failed write

    def left() -> list[Any]:
        waiting = MessageQuery(direction=Direction.INCOMING, notified=False)
        return [r.message for r in bob.store.find(waiting) if r.msg_id not in stuck]

    try:
        wait_for(lambda: not left(), 1.0)
    except AssertionError:
        new = left()
        stuck.update(m.msg_id for m in new)
        return "stored but never announced (notified = 0): " + ", ".join(
            f"{m.kind} seq {m.seq}" for m in new
        )
    return None


def _secret_left_at(db: Path) -> list[str]:
    """Where the deleted message's text is still in bob's file."""
    conn = _real_connect(db)
    try:
        found = [
            f"messages.{kind}"
            for (kind,) in conn.execute(
                "SELECT kind FROM messages WHERE content LIKE ?", (f"%{SECRET_WORD}%",)
            )
        ]
        found += [
            "message_edits"
            for _ in conn.execute(
                "SELECT 1 FROM message_edits WHERE content LIKE ?", (f"%{SECRET_WORD}%",)
            )
        ]
        found += [
            "messages_fts"
            for _ in conn.execute(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (SECRET_WORD,)
            )
        ]
        return found
    finally:
        conn.close()


@dataclass
class Run:
    plan: FaultPlan
    alice_views: list[View]  # after each step
    problems: list[str]
    announced: Counter[str]


def _run_conversation(
    ws: Workspace,
    faults: Callable[[Path, FaultPlan], FaultPlan],
    fail_at: int | None,
    expected: list[View] | None,
) -> Run:
    plan = faults(ws.db(BOB), FaultPlan(ws.db(BOB), fail_at=fail_at))
    alice = ws.client(ALICE, settings=FAST)
    bob = ws.client(BOB, settings=FAST)
    announced: Counter[str] = Counter()
    bob.add_message_listener(lambda m: announced.update([m.msg_id]))
    ids: dict[str, str] = {}
    problems: list[str] = []
    alice_views: list[View] = []
    stuck: set[str] = set()
    first_diff: str | None = None
    plan.counting = True
    for number, (label, act) in enumerate(STEPS):
        plan.step = label
        try:
            act(alice, bob, ids)
        except Exception as exc:  # reported, and the conversation goes on
            problems.append(f"{label!r} raised {type(exc).__name__}: {exc}")
        unsettled = _settle(alice, bob, plan, stuck)
        if unsettled:
            problems.append(f"after {label!r}: {unsettled}")
        seen_by_alice, seen_by_bob = _view(alice, BOB, ids), _view(bob, ALICE, ids)
        alice_views.append(seen_by_alice)
        differs = _diff("alice", seen_by_alice, "bob", seen_by_bob)
        if differs and first_diff is None:
            first_diff = differs
            problems.append(f"after {label!r} (delivered to bob): {differs}")
        if expected is not None:
            off = _diff("alice", seen_by_alice, "dry run", expected[number])
            if off:
                problems.append(f"after {label!r}, alice differs from the dry run: {off}")
    if first_diff is not None:
        final = _diff("alice", alice_views[-1], "bob", _view(bob, ALICE, ids))
        problems.append(f"at the end: {final}" if final else "at the end: both sides agree again")
    plan.step = "end"
    final = _diff("alice", alice_views[-1], "expected", FINAL)
    if final:
        problems.append(f"alice's final state is not the expected one: {final}")
    left = _secret_left_at(ws.db(BOB))
    if left:
        problems.append(f"the deleted message's text is still in bob's file: {left}")
    time.sleep(0.2)  # a late duplicate announcement would come now
    for name in ("m1", "m2"):
        count = announced[ids.get(name, "?")]
        if count != 1:
            problems.append(f"{name} announced {count} times to bob's listener")
    others = set(announced) - set(ids.values())
    if others:
        problems.append(f"bob's listener heard of unknown messages {sorted(others)}")
    ws.close()
    return Run(plan, alice_views, problems, announced)


def _check_injection(run: Run, k: int, dry: FaultPlan) -> list[str]:
    """The fault fired at write ``k``, on the statement of the dry run, and nothing else failed."""
    plan = run.plan
    problems: list[str] = []
    if plan.failed is None:
        return [*problems, f"write {k} never happened (only {len(plan.writes)} writes)"]
    expected = dry.writes[k - 1]
    if (plan.failed.sql, plan.failed.step) != (expected.sql, expected.step):
        problems.append(f"write {k} was not the dry run's ({expected.describe()})")
    if plan.failed.error is None:
        problems.append("the injected write did not fail")
    others = [w for w in plan.errors() if w is not plan.failed]
    problems += [f"another write failed too: {w.describe()}: {w.error}" for w in others]
    return problems


# --------------------------------------------------------------------------- the tests


def test_one_failed_write_at_any_position_still_ends_consistent(workspace, faults):
    dry = _run_conversation(workspace(ALICE, BOB), faults, None, None)
    positions = len(dry.plan.writes)
    table = "\n".join(f"  {w.describe()}" for w in dry.plan.writes)
    print(f"\n{positions} write positions on bob's side:\n{table}")
    assert not dry.problems, "the dry run (no fault) is not consistent:\n" + "\n".join(dry.problems)
    assert not dry.plan.errors(), f"writes failed in the dry run: {dry.plan.errors()}"
    assert positions >= len(STEPS), f"only {positions} writes counted:\n{table}"

    failures: list[str] = []
    started = time.monotonic()
    for k in range(1, positions + 1):
        run = _run_conversation(workspace(ALICE, BOB), faults, k, dry.alice_views)
        problems = _check_injection(run, k, dry.plan) + run.problems
        if problems:
            failed = run.plan.failed
            what = f"{failed.describe()} -> {failed.error}" if failed else f"write {k}"
            failures.append(f"k={k}: {what}\n    " + "\n    ".join(problems))
    print(f"{positions} positions in {time.monotonic() - started:.1f}s")
    assert not failures, (
        f"{len(failures)} of {positions} single-write failures on bob's side do not end "
        "with both sides showing the same conversation, announced once:\n" + "\n".join(failures)
    )


def _send_and_settle(alice: Any, bob: Any, plan: FaultPlan, label: str, text: str) -> str:
    plan.step = label
    msg_id = alice.send_message(BOB, text).message_id
    unsettled = _settle(alice, bob, plan, set())
    assert unsettled is None, f"{label}: {unsettled}"
    return str(msg_id)


def test_recording_an_announcement_hits_a_locked_database(workspace, faults):
    """The ``notified`` update of one message fails once with "database is locked".

    Bob's listener must still hear of each message exactly once, and not again after bob
    closes and starts again (only the message sent after the restart is new to him).
    """

    def conversation(fail_at: int | None) -> tuple[FaultPlan, list[str]]:
        ws = workspace(ALICE, BOB)
        plan = faults(ws.db(BOB), FaultPlan(ws.db(BOB), fail_at=fail_at, mode="lock"))
        alice = ws.client(ALICE, settings=FAST)
        bob = ws.client(BOB, settings=FAST)
        heard: Counter[str] = Counter()
        bob.add_message_listener(lambda m: heard.update([m.msg_id]))
        plan.counting = True
        ids = [
            _send_and_settle(alice, bob, plan, f"alice sends m{i}", f"hello {i}") for i in (1, 2, 3)
        ]
        problems: list[str] = []
        with contextlib.suppress(AssertionError):  # counted below
            wait_for(lambda: all(heard[i] for i in ids), 5)
        time.sleep(0.2)  # a late duplicate would come now
        problems += [
            f"m{n} announced {heard[i]} times before the restart"
            for n, i in enumerate(ids, 1)
            if heard[i] != 1
        ]
        bob.close()
        plan.step = "after bob's restart"
        again: list[str] = []
        bob = ws.client(BOB, settings=FAST)
        bob.add_message_listener(lambda m: again.append(m.msg_id))
        # announcing keeps the sender's order: anything announced again comes before m4
        m4 = _send_and_settle(alice, bob, plan, "alice sends m4", "hello 4")
        try:
            wait_for(lambda: m4 in again, 5)
        except AssertionError:
            problems.append("m4 (sent after the restart) was never announced")
        time.sleep(0.2)
        names = {i: f"m{n}" for n, i in enumerate([*ids, m4], 1)}
        if again != [m4]:
            problems.append(
                "after bob's restart his listener heard "
                f"{[names.get(i, i) for i in again]}, expected only ['m4']"
            )
        ws.close()
        return plan, problems

    dry, problems = conversation(None)
    assert not problems, f"dry run: {problems}"
    before_restart = {f"alice sends m{i}" for i in (1, 2, 3)}
    positions = [w.n for w in dry.writes if _NOTIFIED.search(w.sql) and w.step in before_restart]
    assert len(positions) == 3, [w.describe() for w in dry.writes]

    failures = []
    for k in positions:
        plan, problems = conversation(k)
        failed = plan.failed
        if failed is None or not _NOTIFIED.search(failed.sql):
            problems.insert(0, f"write {k} is not the notified update: {failed}")
        elif "locked" not in (failed.error or "") and not plan.notes:
            problems.insert(0, f"the injected write did not fail with a lock: {failed.error}")
        problems += [
            f"another write failed: {w.describe()}" for w in plan.errors() if w is not failed
        ]
        if problems:
            what = f"{failed.describe()} -> {failed.error}" if failed else f"write {k}"
            failures.append(f"k={k}: {what}\n    " + "\n    ".join(plan.notes + problems))
    assert not failures, (
        "a locked database while recording an announcement breaks exactly-once:\n"
        + "\n".join(failures)
    )
