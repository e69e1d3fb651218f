"""The examples (the seed's steps 2-4) and the demo run as a user runs them: in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from support import ALICE, BOB

from syft_chat.testing import make_workspace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["SYFT_CHAT_LOAD_PLUGINS"] = ""
    return env


def test_seed_steps_2_3_4_run_as_scripts(tmp_path):
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    listener = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "step3_listener.py"), str(configs[BOB]), "bob.db"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert listener.stdout is not None
        first = listener.stdout.readline()
        assert "ready" in first, first
        step2 = subprocess.run(
            [sys.executable, str(EXAMPLES / "step2_basic_chat.py"), str(configs[ALICE]), "a.db"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        assert step2.returncode == 0, step2.stderr
        assert "Available chat users: 1" in step2.stdout
        assert "Message sent with ID:" in step2.stdout
        assert f"{ALICE}: Hello from Alice!" in step2.stdout
        msg_id = step2.stdout.split("Message sent with ID: ")[1].split()[0]
    finally:
        out, _ = listener.communicate("\n", timeout=30)
    assert listener.returncode == 0, out
    assert f"NEW MESSAGE from {ALICE}: Hello from Alice!" in out

    step4 = subprocess.run(
        [sys.executable, str(EXAMPLES / "step4_queries.py"), str(configs[BOB]), "bob.db", msg_id],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert step4.returncode == 0, step4.stderr
    assert "Recent messages: 1" in step4.stdout
    assert "Messages in thread: 1" in step4.stdout


def test_demo_runs_and_cleans_up(tmp_path):
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "syft_chat", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "Hi Bob!" in result.stdout and "Sure, tomorrow at 10?" in result.stdout
    folder = result.stdout.split("Local SyftBox workspace: ")[1].split()[0]
    assert not Path(folder).exists()
    assert time.monotonic() - start < 60


def test_readme_quick_start_runs(tmp_path):
    """The README's Quick start block, run as written against ~/.syftbox/config.json."""
    import shutil

    import syft_chat

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    home = tmp_path / "home"
    (home / ".syftbox").mkdir(parents=True)
    shutil.copy(configs[ALICE], home / ".syftbox" / "config.json")
    bob = syft_chat.client(configs[BOB], db_path=tmp_path / "bob.db")
    try:
        env = {**_env(), "HOME": str(home)}
        env.pop("SYFTBOX_CLIENT_CONFIG_PATH", None)
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert f"['{BOB}']" in result.stdout
        assert "delivered" in result.stdout
        assert [m.content for m in bob.get_chat_history()][:1] == ["Hello from Alice!"]
    finally:
        bob.close()
