"""Run a real SyftBox network on 127.0.0.1: one legacy server and one sync client per datasite.

The server and clients come from PyPI ``syftbox==0.4.0`` (the legacy Python server and sync
client). It pins old dependencies, so it lives in its own virtualenv, never the test venv:
``$SYFT_CHAT_SYFTBOX_VENV`` or ``~/.cache/syft-chat/syftbox-0.4.0``, created on first use.

Every process is started in its own session (process group) and is stopped by that id: SIGTERM,
then SIGKILL, children included. Nothing but 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

SYFTBOX_VERSION = "0.4.0"
VENV_ENV_VAR = "SYFT_CHAT_SYFTBOX_VENV"
DEFAULT_VENV = Path("~/.cache/syft-chat/syftbox-0.4.0")
_REQUIREMENTS = (f"syftbox=={SYFTBOX_VERSION}", "click<8.2")
_READY_MARKER = ".syft-chat-ready"
_HOST = "127.0.0.1"

# The legacy server's permission-file name and the suffix its client gives rejected uploads.
PERM_FILE = "syftperm.yaml"
REJECTED_SUFFIX = ".syftrejected"


class SyftBoxNetworkError(RuntimeError):
    """The network could not be started or did not become ready."""


class SyftBoxVenvError(RuntimeError):
    """The dedicated syftbox virtualenv could not be created."""


# --------------------------------------------------------------------------- virtualenv


def venv_path() -> Path:
    return Path(os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV).expanduser().resolve()


def ensure_syftbox_venv(path: Path | None = None, timeout: float = 600.0) -> Path:
    """Return the python of a virtualenv holding ``syftbox==0.4.0``, creating it if needed.

    Safe for parallel callers: creation happens under an exclusive ``flock`` on a sibling lock
    file, and a marker file written last tells a finished venv from a half-built one (a venv
    cannot be atomically renamed into place: its scripts hard-code their own path).
    """
    venv = (path or venv_path()).expanduser().resolve()
    python = venv / "bin" / "python"
    marker = venv / _READY_MARKER
    if marker.is_file() and python.exists():
        return python
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        return _create_venv_locked(venv, timeout)
    except OSError as exc:
        raise SyftBoxVenvError(f"cannot create {venv}: {exc}") from exc


def _create_venv_locked(venv: Path, timeout: float) -> Path:
    python = venv / "bin" / "python"
    marker = venv / _READY_MARKER
    lock_path = venv.parent / f".{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.is_file() and python.exists():
                return python
            if python.exists() and _has_syftbox(python):
                return python  # a venv made by hand: use it, never touch it
            building = venv.parent / f".{venv.name}.building"
            if venv.exists():
                # Only ever delete what this function half-built (or an empty directory).
                if not building.exists() and any(venv.iterdir()):
                    raise SyftBoxVenvError(
                        f"{venv} exists but has no syftbox=={SYFTBOX_VERSION}; remove it or "
                        f"point ${VENV_ENV_VAR} elsewhere"
                    )
                shutil.rmtree(venv)
            building.touch()
            log = venv.parent / f"{venv.name}.install.log"
            steps = [
                [_base_python(), "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "--quiet", *_REQUIREMENTS],
                [str(python), "-c", "import syftbox.server.server, syftbox.client.cli"],
            ]
            with open(log, "w") as out:
                for cmd in steps:
                    try:
                        subprocess.run(
                            cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=True
                        )
                    except (OSError, subprocess.SubprocessError) as exc:
                        shutil.rmtree(venv, ignore_errors=True)
                        tail = log.read_text(errors="replace")[-3000:]
                        raise SyftBoxVenvError(
                            f"creating {venv} failed at {cmd[1:4]}: {exc}\n{tail}"
                        ) from exc
            marker.write_text(f"syftbox=={SYFTBOX_VERSION}\n")
            building.unlink()
            return python
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _has_syftbox(python: Path) -> bool:
    probe = "import importlib.metadata as m, syftbox.server.server; print(m.version('syftbox'))"
    try:
        out = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip() == SYFTBOX_VERSION


def _base_python() -> str:
    # The interpreter the test venv was made from (a venv of a venv works too, but this is cleaner).
    return getattr(sys, "_base_executable", None) or sys.executable


# --------------------------------------------------------------------------- helpers


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``path`` via a sibling temp file and ``os.replace``.

    The temp name starts with a dot and ends in ``.tmp``: the sync client ignores both, so a
    half-written file is never uploaded.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


# No proxies: every request goes straight to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> dict:
    if not url.startswith(f"http://{_HOST}:"):
        raise ValueError(f"refusing to contact {url}: only {_HOST} is allowed")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("x-syftbox-version", SYFTBOX_VERSION)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with _OPENER.open(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def _child_env(extra: dict[str, str], home: Path, venv_bin: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SYFTBOX_")
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}
        and k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    env.update(
        HOME=str(home),  # keeps ~/.syftbox and friends out of the real home
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        SYFTBOX_OTEL_ENABLED="false",
    )
    env.update(extra)
    return env


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """Whether the leader still runs. Never reaps it: while it is unreaped (a zombie at
        worst) its pid, which is also the process-group id, cannot be reused."""
        if self.popen.returncode is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def terminate(self) -> None:
        """SIGTERM the whole process group (started with start_new_session: pgid == pid)."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, wait for the leader, SIGKILL the group, reap. Idempotent."""
        if self.popen.returncode is not None:
            return  # already reaped by an earlier stop()
        pgid = self.popen.pid
        self.terminate()
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The leader is dead-but-unreaped or still alive: the group id is still ours. Sweep it,
        # so children that ignored SIGTERM go too, then reap.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.popen.wait()


@dataclass
class _Datasite:
    email: str
    home: Path  # working directory and $HOME of the client
    data_dir: Path  # the sync folder
    config_path: Path
    port: int
    token: str = ""
    proc: _Proc | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- the network


class SyftBoxNetwork:
    """A SyftBox server plus one sync client per datasite, all on 127.0.0.1, under ``root``.

    Layout::

        root/server/            server cwd; data in root/server/data
        root/clients/<email>/   client cwd and $HOME; config.json; SyftBox/ (the sync folder)
        root/logs/<name>.log    stdout+stderr of each process
    """

    def __init__(self, root: Path, python: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self._python = python
        self._server: _Proc | None = None
        self.server_port: int | None = None
        self._sites: dict[str, _Datasite] = {}
        self._all_procs: list[_Proc] = []
        self.timings: dict[str, float] = {}

    # ---- properties

    @property
    def python(self) -> Path:
        if self._python is None:
            self._python = ensure_syftbox_venv()
        return self._python

    @property
    def server_url(self) -> str:
        if self.server_port is None:
            raise SyftBoxNetworkError("server not started")
        return f"http://{_HOST}:{self.server_port}"

    @property
    def emails(self) -> list[str]:
        return list(self._sites)

    def config_path(self, email: str) -> Path:
        return self._site(email).config_path

    def data_dir(self, email: str) -> Path:
        """The sync folder of ``email``: it holds ``datasites/``, ``apps/``, ``logs/``..."""
        return self._site(email).data_dir

    def datasites(self, email: str) -> Path:
        return self._site(email).data_dir / "datasites"

    def client_url(self, email: str) -> str:
        return f"http://{_HOST}:{self._site(email).port}"

    # ---- lifecycle

    def start(self, emails: Iterable[str], timeout: float = 60.0) -> dict[str, Path]:
        """Start the server and one client per email; wait until every client sees every peer.

        Returns each datasite's config.json (written by the client; ``syft_core.Client.load``
        reads it).
        """
        emails = list(dict.fromkeys(emails))
        t0 = time.monotonic()
        try:
            self.start_server(timeout=timeout)
            for email in emails:
                self._add_site(email)
            for email in emails:
                self.start_client(email, wait=False)
            self.timings["processes_started"] = time.monotonic() - t0
            self.wait_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["ready"] = time.monotonic() - t0
        return {e: self._sites[e].config_path for e in emails}

    def start_server(self, timeout: float = 30.0) -> None:
        if self._server is not None and self._server.alive():
            return
        self.server_port = self.server_port or free_port()
        cwd = self.root / "server"
        cwd.mkdir(parents=True, exist_ok=True)
        env = _child_env(
            {
                "SYFTBOX_DATA_FOLDER": str(cwd / "data"),
                "SYFTBOX_AUTH_ENABLED": "false",
                "SYFTBOX_OTEL_ENABLED": "false",
                "SYFTBOX_ENV": "DEV",
            },
            home=cwd,
            venv_bin=self.python.parent,
        )
        cmd = [str(self.python), "-m", "uvicorn", "syftbox.server.server:app"]
        cmd += ["--host", _HOST, "--port", str(self.server_port)]
        self._server = self._spawn("server", cmd, cwd, env)
        self._wait(
            lambda: self._ping(f"{self.server_url}/info"),
            timeout,
            "server /info",
            watch=self._server,
        )

    def start_client(self, email: str, wait: bool = True, timeout: float = 60.0) -> Path:
        """(Re)start ``email``'s sync client on its existing sync folder; returns config.json.

        An email the network does not know yet joins it as a new datasite.
        """
        site = self._add_site(email)
        if site.proc is not None and site.proc.alive():
            return site.config_path
        if not site.token:
            site.token = self._access_token(email)
        env = _child_env(
            {
                "SYFTBOX_CLIENT_CONFIG_PATH": str(site.config_path),
                "SYFTBOX_EMAIL": email,
                "SYFTBOX_ACCESS_TOKEN": site.token,
                "SYFTBOX_DATA_DIR": str(site.data_dir),
                "SYFTBOX_SERVER_URL": self.server_url,
                "SYFTBOX_PORT": str(site.port),
                "SYFTBOX_DISABLE_ICONS": "1",
            },
            home=site.home,
            venv_bin=self.python.parent,
        )
        syftbox = self.python.parent / "syftbox"
        site.proc = self._spawn(
            f"client-{email}", [str(syftbox), "client", "--service", "--verbose"], site.home, env
        )
        if wait:
            self.wait_ready([email], timeout=timeout)
        return site.config_path

    def stop_client(self, email: str) -> None:
        """Stop ``email``'s client (the datasite goes offline); its sync folder is kept."""
        site = self._site(email)
        if site.proc is not None:
            site.proc.stop()
            site.proc = None

    def stop(self) -> None:
        """Stop every client, then the server. Idempotent; never raises for dead processes."""
        for proc in self._all_procs:  # SIGTERM all first, so they shut down in parallel
            if proc is not self._server:
                proc.terminate()
        for site in self._sites.values():
            if site.proc is not None:
                site.proc.stop()
                site.proc = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        for proc in self._all_procs:  # anything left from restarts
            proc.stop(grace=1.0)
        self._all_procs.clear()

    def __enter__(self) -> SyftBoxNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- readiness and sync helpers

    def is_running(self, email: str) -> bool:
        proc = self._site(email).proc
        return proc is not None and proc.alive()

    def wait_ready(self, emails: Iterable[str] | None = None, timeout: float = 60.0) -> None:
        """Wait until each client's local API answers, its config.json exists and it holds
        every other datasite's ``public/syftperm.yaml`` (proof that it has synced from the
        server at least once)."""
        targets = list(emails) if emails is not None else self.emails
        peers = self.emails

        def ready() -> bool:
            for email in targets:
                site = self._sites[email]
                if site.proc is None or not site.proc.alive():
                    raise SyftBoxNetworkError(f"client {email} exited")
                if not site.config_path.is_file():
                    return False
                ds = site.data_dir / "datasites"
                if not all((ds / p / "public" / PERM_FILE).is_file() for p in peers):
                    return False
                if not self._ping(f"{self.client_url(email)}/version"):
                    return False
            return True

        self._wait(ready, timeout, f"clients {targets} ready", watch=self._server)

    def wait_for_file(
        self,
        email: str,
        relpath: str | Path,
        timeout: float = 30.0,
        content: bytes | None = None,
    ) -> Path:
        """Wait until ``datasites/<relpath>`` exists in ``email``'s sync folder (with exactly
        ``content`` if given: the sync client writes in place, so a reader can see a prefix)."""
        path = self.datasites(email) / relpath

        def present() -> bool:
            if not path.is_file():
                return False
            return content is None or path.read_bytes() == content

        self._wait(present, timeout, f"{path} in {email}'s sync folder")
        return path

    def server_file(self, relpath: str | Path) -> Path:
        """Where the server stores ``<datasite>/<path>`` (its snapshot folder): white-box, for
        barriers such as "the server has accepted this permission file"."""
        return self.root / "server" / "data" / "snapshot" / relpath

    def wait_on_server(self, relpath: str | Path, timeout: float = 30.0) -> Path:
        path = self.server_file(relpath)
        self._wait(path.is_file, timeout, f"{relpath} on the server", watch=self._server)
        # The server writes the file, then commits its metadata and rules in the same request:
        # give that commit a moment.
        time.sleep(0.2)
        return path

    # ---- logs

    def download(self, email: str, relpath: str | Path) -> tuple[int, bytes]:
        """Ask the server for ``datasites/<relpath>`` as ``email`` (its sync client's token),
        through the legacy server's ``/sync/download``: ``(HTTP status, body)``. A refused
        read is a 4xx status (the server checks the permission files)."""
        site = self._site(email)
        if not site.token:
            site.token = self._access_token(email)
        url = f"{self.server_url}/sync/download"
        req = urllib.request.Request(
            url, data=json.dumps({"path": str(relpath)}).encode(), method="POST"
        )
        req.add_header("x-syftbox-version", SYFTBOX_VERSION)
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {site.token}")
        try:
            with _OPENER.open(req, timeout=30) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def log_files(self) -> list[Path]:
        # Clients run with --verbose, so their stdout logs hold the DEBUG lines (each sync
        # action) that they also write, coloured, to <sync folder>/logs/.
        return sorted((self.root / "logs").glob("*.log"))

    def dump_logs(self, max_chars_per_file: int = 20_000) -> str:
        parts = []
        for path in self.log_files():
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                text = f"<unreadable: {exc}>"
            if len(text) > max_chars_per_file:
                text = (
                    f"... ({len(text) - max_chars_per_file} chars cut)\n"
                    + text[-max_chars_per_file:]
                )
            parts.append(f"===== {path.relative_to(self.root)} =====\n{text}")
        return "\n".join(parts)

    # ---- internals

    def _site(self, email: str) -> _Datasite:
        try:
            return self._sites[email]
        except KeyError:
            raise KeyError(f"{email} is not a datasite of this network") from None

    def _add_site(self, email: str) -> _Datasite:
        if email in self._sites:
            return self._sites[email]
        home = self.root / "clients" / email
        home.mkdir(parents=True, exist_ok=True)
        site = _Datasite(
            email=email,
            home=home,
            data_dir=home / "SyftBox",
            config_path=home / "config.json",
            port=free_port(),
        )
        self._sites[email] = site
        return site

    def _access_token(self, email: str) -> str:
        email_token = _http(
            "POST", f"{self.server_url}/auth/request_email_token", {"email": email}
        )["email_token"]
        resp = _http(
            "POST",
            f"{self.server_url}/auth/validate_email_token?email={urllib.parse.quote(email)}",
            headers={"Authorization": f"Bearer {email_token}"},
        )
        return str(resp["access_token"])

    def _spawn(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str]) -> _Proc:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with open(log, "ab") as out:
            out.write(f"\n--- {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = _Proc(name, popen, log)
        self._all_procs.append(proc)
        return proc

    @staticmethod
    def _ping(url: str) -> bool:
        try:
            req = urllib.request.Request(url, method="GET")
            with _OPENER.open(req, timeout=2) as resp:
                return 200 <= resp.status < 300
        except (OSError, ValueError):
            return False

    def _wait(
        self,
        cond: Callable[[], bool],
        timeout: float,
        what: str,
        watch: _Proc | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if watch is not None and not watch.alive():
                raise SyftBoxNetworkError(
                    f"{watch.name} exited while waiting for {what}\n" + self.dump_logs()
                )
            try:
                if cond():
                    return
            except SyftBoxNetworkError as exc:
                raise SyftBoxNetworkError(f"{exc}\n{self.dump_logs()}") from None
            if time.monotonic() > deadline:
                raise SyftBoxNetworkError(
                    f"timed out after {timeout:.0f}s waiting for {what}\n" + self.dump_logs()
                )
            time.sleep(0.1)
