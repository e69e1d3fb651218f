"""``syft-chat web`` from the command line, and ``run.sh`` run the way the SyftBox client
runs an app: its own folder as the working directory, ``SYFTBOX_ASSIGNED_PORT`` and
``SYFTBOX_CLIENT_CONFIG_PATH`` set. Both are real processes; the page is fetched with the
secret from the printed address."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from support import command_env

from syft_chat.testing import make_workspace

ROOT = Path(__file__).resolve().parents[2]
ALICE = "alice@openmined.org"
# output to a pipe (or --quiet) names the address without its secret, and the file with it
URL = re.compile(
    r"chat page: http://127\.0\.0\.1:(\d+)/ \(the address with its secret is in (\S+),"
)
#: the app's virtualenv, kept between runs (run.sh reinstalls when the package changed)
APP_VENV = Path(
    os.environ.get("SYFT_CHAT_TEST_APP_VENV") or "~/.cache/syft-chat/app-venv"
).expanduser()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_url(proc: subprocess.Popen[str], timeout: float) -> tuple[str, int]:
    end = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode} before printing its address")
            continue
        found = URL.search(line)
        if found:
            assert "token=" not in line
            url = Path(found.group(2)).read_text(encoding="utf-8").strip()
            assert url.startswith(f"http://127.0.0.1:{found.group(1)}/?token=")
            return url, int(found.group(1))
    raise AssertionError("no address printed")


def _fetch_page(url: str) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url, timeout=5) as response:
        # the token left the query (sent to the server) for the fragment (kept by the page)
        assert response.url.split("#")[0].endswith("/")
        page = response.read().decode()
    token = url.split("token=", 1)[1]
    me = urllib.request.Request(url.split("?")[0] + "api/me", headers={"X-Syft-Chat-Token": token})
    with opener.open(me, timeout=5) as response:
        assert b'"email":"alice@openmined.org"' in response.read()
    with opener.open(url.split("?")[0] + "static/app.js", timeout=5) as response:
        assert b"textContent" in response.read()  # the page's script ships in the package
    return page


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("command", [["web"], ["serve", "--web"]])
def test_syft_chat_web_prints_its_address_and_stops_on_sigterm(tmp_path, command):
    configs = make_workspace(tmp_path / "ws", [ALICE])
    env = command_env(configs[ALICE], tmp_path / "alice.db")
    env.pop("SYFTBOX_ASSIGNED_PORT", None)
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syft_chat", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        url, port = _wait_for_url(proc, 30)
        assert "syft-chat" in _fetch_page(url)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        url_file = tmp_path / "ws" / ".syft-chat" / "syft_chat" / f"{ALICE}.web-url"
        assert url_file.read_text().strip() == url
    finally:
        code = _stop(proc)
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert not url_file.exists()


def _app_copy(dest: Path) -> Path:
    """What ``syftbox app install`` leaves in SyftBox/apps/<name>: the repository's files."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "build", "__pycache__", "test-artifacts", "*.db",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", "tests", "benchmarks",
    )  # fmt: skip
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


@pytest.mark.skipif(shutil.which("sh") is None, reason="run.sh needs a POSIX shell")
def test_run_sh_as_the_syftbox_client_runs_it(tmp_path):
    data_dir = tmp_path / "SyftBox"
    configs = make_workspace(data_dir, [ALICE])
    app = _app_copy(data_dir / "apps" / "syft-chat")
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "SYFTBOX_ASSIGNED_PORT": str(port),
        "SYFTBOX_CLIENT_CONFIG_PATH": str(configs[ALICE]),
        "SYFT_CHAT_APP_VENV": str(APP_VENV),
        "SYFT_CHAT_LOAD_PLUGINS": "",
        "PYTHON": sys.executable,
        "PIP_CACHE_DIR": str(Path("~/.cache/pip").expanduser()),
    }
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            ["./run.sh"], cwd=app, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        url, printed_port = _wait_for_url(proc, 300)  # the first run installs the venv
        assert printed_port == port
        assert "syft-chat" in _fetch_page(url)
        # the database is the default one, under the app's HOME
        assert (tmp_path / "home" / ".syft-chat" / ALICE / "chat_messages.db").exists()
    finally:
        code = _stop(proc)
    assert code == 0, (tmp_path / "stderr.txt").read_text()
    assert (APP_VENV / ".syft-chat-installed").exists()


def test_the_web_guide_snippet_runs(tmp_path):
    """docs/web.md's Python block, run as written (the config from the environment)."""
    code = (ROOT / "docs" / "web.md").read_text().split("```python", 1)[1].split("```", 1)[0]
    configs = make_workspace(tmp_path / "ws", [ALICE])
    env = command_env(configs[ALICE], tmp_path / "alice.db")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"open http://127\.0\.0\.1:\d+/\?token=", result.stdout)


def test_a_port_in_use_is_a_clear_error(tmp_path):
    configs = make_workspace(tmp_path / "ws", [ALICE])
    env = command_env(configs[ALICE], tmp_path / "alice.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "syft_chat", "web", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
