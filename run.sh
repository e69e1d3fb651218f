#!/bin/sh
# syft-chat as a SyftBox app. The SyftBox client runs SyftBox/apps/<name>/run.sh with this
# folder as its working directory and SYFTBOX_ASSIGNED_PORT, SYFTBOX_CLIENT_CONFIG_PATH
# (and the other SYFTBOX_* variables) set. First run: a virtualenv of its own in .venv
# (or $SYFT_CHAT_APP_VENV), with syft-chat installed from this folder; again whenever a
# file of the package is newer than the last install. Then it serves the datasite and the
# chat page on 127.0.0.1:$SYFTBOX_ASSIGNED_PORT; the address to open (with its secret) is
# printed and written to <data_dir>/.syft-chat/syft_chat/<email>.web-url (docs/web.md).
# --quiet: the client keeps app output in a log file, so no message text is printed.
set -eu
cd "$(dirname "$0")"
venv="${SYFT_CHAT_APP_VENV:-.venv}"
marker="$venv/.syft-chat-installed"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/syft-chat" ] || [ ! -f "$marker" ] \
    || [ -n "$(find pyproject.toml syft_chat -newer "$marker" -print 2>/dev/null | head -n 1)" ]; then
    echo "syft-chat app: installing into $venv" >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check ".[web]" >&2
    touch "$marker"
fi

if [ -n "${SYFTBOX_ASSIGNED_PORT:-}" ]; then
    exec "$venv/bin/syft-chat" serve --web --quiet --port "$SYFTBOX_ASSIGNED_PORT"
fi
exec "$venv/bin/syft-chat" serve --web --quiet
