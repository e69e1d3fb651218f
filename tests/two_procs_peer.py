"""A second process on a datasite, for ``test_two_processes.py``.

``python two_procs_peer.py CONFIG DB`` starts a client, prints ``ready <role>`` (or
``error <message>`` if the client refuses to start), then one ``heard <msg_id> <content>``
line for every message its listener hears, and obeys commands on stdin, one a line:

* ``send <email> <text>``: send and print ``sent <status> <msg_id>``;
* ``role``: print ``role <role>``;
* ``quit``: close the client and exit.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import syft_chat
from syft_chat.errors import SyftChatError

_out = threading.Lock()


def say(*words: object) -> None:
    with _out:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def main() -> int:
    config, db = sys.argv[1], sys.argv[2]
    settings = json.loads(os.environ.get("TWO_PROCS_SETTINGS") or "{}")
    try:
        client = syft_chat.client(config, db_path=db, settings=settings)
    except SyftChatError as exc:
        say("error", " ".join(str(exc).split()))
        return 3
    client.add_message_listener(lambda m: say("heard", m.msg_id, m.content))
    say("ready", getattr(client, "role", "serving"))
    try:
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            if command == "send":
                to, _, text = rest.partition(" ")
                try:
                    response = client.send_message(to, text, timeout=10)
                    say("sent", response.status, response.message_id)
                except SyftChatError as exc:
                    say("failed", type(exc).__name__, exc)
            elif command == "role":
                say("role", getattr(client, "role", "serving"))
            elif command == "quit":
                break
    finally:
        client.close()
    say("closed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
