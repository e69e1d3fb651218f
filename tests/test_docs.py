"""Meta-tests that keep the documented surface honest (datasette's test_docs.py idea)."""

from __future__ import annotations

import inspect
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from syft_chat import hookspecs
from syft_chat.docs import hook_names, hook_reference

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "plugins" / "README.md"


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_docstring_covers_every_argument(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert doc, f"{name} has no docstring"
    for arg in inspect.signature(fn).parameters:
        assert f":param {arg}:" in doc, f"{name}'s docstring does not describe {arg!r}"
    # every docstring says what happens when an implementation raises
    assert "rais" in doc, f"{name}'s docstring does not say what happens when it raises"
    assert "thread" in doc, f"{name}'s docstring does not name its thread"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_in_the_plugin_guide_and_has_a_test(name):
    assert f"`{name}(" in GUIDE.read_text()
    files = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_docs.py"]
    tests = "".join(p.read_text() for p in files)
    assert re.search(rf"\b{name}\b", tests), f"no test implements {name}"


def test_plugin_guide_embeds_the_current_hook_reference():
    text = GUIDE.read_text()
    start = text.index("<!-- hook-reference")
    body = text[text.index("\n", start) + 1 : text.index("<!-- /hook-reference -->")]
    assert body == hook_reference(), "regenerate with: python -m syft_chat hooks"


def test_hooks_command_prints_the_reference():
    out = subprocess.run(
        [sys.executable, "-m", "syft_chat", "hooks"], capture_output=True, text=True, check=True
    ).stdout
    assert out == hook_reference()


def test_plugins_command_lists_builtins():
    out = subprocess.run(
        [sys.executable, "-m", "syft_chat", "plugins"],
        capture_output=True,
        text=True,
        check=True,
        env={"SYFT_CHAT_LOAD_PLUGINS": "", "PATH": ""},
    ).stdout
    assert "syft_chat.plugins.syft_rpc.transport: chat_register_transports" in out
    assert "interpreter:" in out


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- ci-test -->")[1].split("<!-- /ci-test -->")[0]
    command = [line for line in block.splitlines() if line and not line.startswith("```")]
    assert command == [
        'python -m pip install -e ".[dev]" -e plugins/syft-chat-echo-bot'
        " -e plugins/syft-chat-encryption && python -m pytest -q"
    ]
    assert "ci-test" in (ROOT / ".ci" / "run").read_text()


def test_trace_switch_logs_hook_calls(pair, monkeypatch, caplog):
    from syft_chat import dispatch

    _, alice, _ = pair
    monkeypatch.setattr(alice.hooks, "_trace", True)
    with caplog.at_level(logging.INFO, logger=dispatch.trace_log.name):
        alice.list_available_users()
    assert any("chat_discover_users" in r.getMessage() for r in caplog.records)
