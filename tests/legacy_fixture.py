"""A message database as the original library (``syft_chat_stateful``) wrote it.

The original kept its history through SQLAlchemy: a declarative ``messages`` model
whose JSON column is named ``meta_data`` (``metadata`` is reserved on a declarative
class), ``timestamp`` a ``DateTime`` (``default=datetime.now``: naive local time,
stored by SQLAlchemy as text), the metadata stored as ``str(dict)`` (read back with
``eval``), and the conversation partner of an outgoing message only inside it
(``{'recipient': ...}``). :func:`build_legacy_db` writes rows through a SQLAlchemy
``Session`` exactly that way, so the file has the original's own schema, types and
text formats, not a hand-written imitation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, Integer, String, Text, create_engine
from sqlalchemy.orm import Session, declarative_base

Base: Any = declarative_base()


class Message(Base):
    """The original library's model (``messages``)."""

    __tablename__ = "messages"

    id = Column(Integer, primary_key=True)
    msg_id = Column(String, unique=True, index=True)
    sender = Column(String, index=True)
    content = Column(Text)
    timestamp = Column(DateTime, default=datetime.now)
    thread_id = Column(String, nullable=True, index=True)
    reply_to = Column(String, nullable=True)
    meta_data = Column(Text, nullable=True)  # str(dict); "metadata" is reserved


class Evil:
    """A value whose ``repr`` is code: ``eval`` of the stored metadata would run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __repr__(self) -> str:
        return f"__import__('pathlib').Path({str(self.marker)!r}).write_text('pwned')"


@dataclass
class LegacyRow:
    """One message as the original stored it (``meta_data`` is ``str(metadata)``)."""

    msg_id: str
    sender: str
    content: str
    timestamp: datetime | None  # naive local; None: the column default (datetime.now)
    thread_id: str | None = None
    reply_to: str | None = None
    metadata: Any = None  # None: no metadata (NULL)
    raw_meta: str | None = field(default=None)  # text stored as it is (a JSON writer)

    @property
    def meta_data(self) -> str | None:
        if self.raw_meta is not None:
            return self.raw_meta
        return None if self.metadata is None else str(self.metadata)


def legacy_rows(owner: str, peer: str, other: str, marker: Path) -> list[LegacyRow]:
    """The fixture's messages, oldest first: both directions with ``peer``, one
    outgoing to ``other``, one outgoing the original kept no recipient for, and
    metadata of every odd kind (a datetime, a set, unicode, None, code, JSON)."""
    t0 = datetime(2024, 5, 1, 9, 0, 0, 123456)  # naive: the original's local time

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    return [
        LegacyRow("m1-in", peer, "hi alice", at(0), "t1"),
        LegacyRow("m2-out", owner, "hi bob", at(1), "t1", "m1-in", {"recipient": peer}),
        LegacyRow(
            "m3-in", peer, "grüße 😀 ünïcode", at(2), "t1", "m2-out", {"lang": "de", "e": "😀"}
        ),
        LegacyRow(
            "m4-out",
            owner,
            "sent with a date",
            at(3),
            "t2",
            None,
            {"recipient": peer, "sent": datetime(2024, 5, 1, 9, 3), "n": 3},
        ),
        LegacyRow(
            "m5-out", owner, "to carol", at(4), None, None, {"recipient": other, "tags": {"x"}}
        ),
        LegacyRow("m6-in", peer, "do not run me", at(5), None, None, {"note": Evil(marker)}),
        LegacyRow("m7-in", peer, "str(None)", at(6), None, None, raw_meta=str(None)),
        LegacyRow(
            "m8-out",
            owner,
            "json-written",
            at(7),
            None,
            None,
            raw_meta=json.dumps({"recipient": peer}),
        ),
        LegacyRow("m9-out", owner, "lost recipient", at(8), None, None, None),
        LegacyRow(
            "m10-out",
            owner,
            "latest, default timestamp",
            None,
            "t1",
            "m3-in",
            {"recipient": peer, "ok": True, "none": None, "pair": (1, 2)},
        ),
    ]


def build_legacy_db(path: Path, rows: list[LegacyRow]) -> None:
    """Create ``path`` with the original's schema and write ``rows`` as it did."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        Base.metadata.create_all(engine)
        for row in rows:  # the original opened a session per stored message
            with Session(engine) as session:
                message = Message(
                    msg_id=row.msg_id,
                    sender=row.sender,
                    content=row.content,
                    thread_id=row.thread_id,
                    reply_to=row.reply_to,
                    meta_data=row.meta_data,
                )
                if row.timestamp is not None:
                    message.timestamp = row.timestamp
                session.add(message)
                session.commit()
    finally:
        engine.dispose()
