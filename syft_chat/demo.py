"""``python -m syft_chat demo``: a conversation between local datasites, nothing to configure."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from .client import SyftChatClient
from .models import ChatMessage
from .testing import make_workspace

__all__ = ["run_demo"]

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"


def _print(message: ChatMessage, indent: str = "") -> None:
    arrow = f"{message.sender} -> {message.recipient}"
    print(f"{indent}[{message.timestamp:%H:%M:%S}] {arrow}: {message.content}")


def run_demo(keep: bool = False, root: Path | None = None) -> Path:
    """Lay out a workspace with alice and bob, let them talk, print the history.

    Returns the workspace folder (deleted afterwards unless ``keep``).
    """
    folder = Path(root) if root else Path(tempfile.mkdtemp(prefix="syft-chat-demo-"))
    print(f"Local SyftBox workspace: {folder}")
    configs = make_workspace(folder, [ALICE, BOB])
    received = threading.Event()
    try:
        with (
            SyftChatClient(configs[ALICE], db_path=folder / "alice.db") as alice,
            SyftChatClient(configs[BOB], db_path=folder / "bob.db") as bob,
        ):

            def bob_listener(message: ChatMessage) -> None:
                print(f"  (bob's listener) new message from {message.sender}: {message.content!r}")
                received.set()

            bob.add_message_listener(bob_listener)
            print(f"alice sees chat users: {alice.list_available_users()}")

            hello = alice.send_message(BOB, "Hi Bob! Shall we look at the census dataset?")
            print(f"alice -> bob: delivered={hello.status == 'delivered'} id={hello.message_id}")
            received.wait(5)
            answer = bob.send_message(ALICE, "Sure, tomorrow at 10?", reply_to=hello.message_id)
            alice.send_message(BOB, "Perfect, see you then.", reply_to=answer.message_id)
            alice.send_message(BOB, "(unrelated) Did you get the new keys?", thread_id="keys")

            print("\nalice's history with bob (from her SQLite database):")
            for message in alice.get_chat_history(with_user=BOB):
                _print(message, "  ")
            print("\nthe thread started by alice's first message, as bob stored it:")
            for message in bob.get_chat_history(thread_id=hello.message_id):
                _print(message, "  ")
    finally:
        if keep:
            print(f"\nKept {folder}; alice's config: {configs[ALICE]}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return folder
