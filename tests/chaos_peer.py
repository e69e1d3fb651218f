"""A chat peer run as a separate process by the crash tests (see test_crash_recovery.py).

    python chaos_peer.py serve CONFIG DB LOG      # announce each message as a line in LOG
    python chaos_peer.py send CONFIG DB TO N      # send m0000..m{N-1} (skipping those stored)

Settings come as JSON in $CHAOS_SETTINGS. Both run until killed or done.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading

import syft_chat


def serve(config: str, db: str, log_path: str) -> None:
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives until killed
    lock = threading.Lock()

    def on_message(message: syft_chat.ChatMessage) -> None:
        with lock:
            log.write(f"{message.seq} {message.content}\n")

    client = syft_chat.client(config, db_path=db, settings=_settings())
    client.add_message_listener(on_message)
    print("ready", flush=True)
    threading.Event().wait()


def send(config: str, db: str, to: str, count: int) -> None:
    client = syft_chat.client(config, db_path=db, settings=_settings())
    conn = sqlite3.connect(db)
    done = {row[0] for row in conn.execute("SELECT content FROM messages WHERE direction='out'")}
    conn.close()
    print("ready", flush=True)
    for i in range(count):
        content = f"m{i:04d}"
        if content not in done:
            client.send_message(to, content, timeout=0)
    while client.pending_messages():
        threading.Event().wait(0.1)
    client.close()
    print("done", flush=True)


def _settings() -> dict[str, object]:
    return dict(json.loads(os.environ.get("CHAOS_SETTINGS", "{}")))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "serve":
        serve(*args)
    else:
        send(args[0], args[1], args[2], int(args[3]))
