"""The network tier works without syft-chat: files sync, and the legacy server enforces the
permission dialect the chat transport writes (``syftperm.yaml`` with ``{useremail}`` rules)."""

from __future__ import annotations

import time

import pytest
from syft_core import Client

from .conftest import ALICE, BOB
from .syftbox_network import PERM_FILE, REJECTED_SUFFIX, SyftBoxNetwork, write_atomic

pytestmark = pytest.mark.network

MALLORY = "mallory@example.com"  # has no client: only a folder name

# Anyone may read, create and write anything under the folder holding this file.
PUBLIC_RW_PERMS = """\
- path: '**'
  user: '*'
  permissions: [create, write, read]
"""

# The request-folder dialect of the legacy server (syftbox 0.4.0), put in
# ``app_data/<app>/rpc/``: one ``*`` per endpoint level (``**/{useremail}`` is refused by its
# parser). ``{useremail}`` is replaced by the *requesting* user, so each user may create, write
# and read only ``*.request`` files in the folder named after them, and read and write (to
# delete) the ``*.response`` files the owner puts there. Create and write also need read.
RPC_PERMS = """\
- path: '*/{useremail}/*.request'
  user: '*'
  permissions: [create, write, read]
- path: '*/{useremail}/*.response'
  user: '*'
  permissions: [read, write]
"""

RPC = "app_data/test/rpc"


def test_config_paths_load_with_syft_core(syftbox_network: SyftBoxNetwork) -> None:
    for email in (ALICE, BOB):
        client = Client.load(syftbox_network.config_path(email))
        assert client.email == email
        assert client.my_datasite == syftbox_network.datasites(email) / email
        assert client.my_datasite.is_dir()


def test_public_folder_syncs_both_ways(syftbox_network: SyftBoxNetwork) -> None:
    net = syftbox_network
    shared = net.datasites(ALICE) / ALICE / "shared"
    write_atomic(shared / PERM_FILE, PUBLIC_RW_PERMS)
    net.wait_on_server(f"{ALICE}/shared/{PERM_FILE}")

    t0 = time.monotonic()
    write_atomic(shared / "hello.txt", b"hello from alice")
    net.wait_for_file(BOB, f"{ALICE}/shared/hello.txt", content=b"hello from alice")
    latency = time.monotonic() - t0
    print(f"alice -> bob sync latency: {latency:.2f}s")

    # Bob writes into alice's public-writable folder; it reaches alice.
    write_atomic(net.datasites(BOB) / ALICE / "shared" / "from_bob.txt", b"hi alice")
    net.wait_for_file(ALICE, f"{ALICE}/shared/from_bob.txt", content=b"hi alice")


def test_request_folder_permissions(syftbox_network: SyftBoxNetwork) -> None:
    net = syftbox_network
    write_atomic(net.datasites(ALICE) / ALICE / RPC / PERM_FILE, RPC_PERMS)
    net.wait_on_server(f"{ALICE}/{RPC}/{PERM_FILE}")

    bob_ep = net.datasites(BOB) / ALICE / RPC / "ep"
    # Forbidden: bob writes in another user's sender folder, and in alice's own one.
    write_atomic(bob_ep / MALLORY / "forged.request", b'{"sender": "mallory"}')
    write_atomic(bob_ep / ALICE / "forged.request", b'{"sender": "alice"}')
    # Allowed: bob writes in his own sender folder.
    write_atomic(bob_ep / BOB / "x.request", b'{"sender": "bob"}')

    net.wait_for_file(ALICE, f"{ALICE}/{RPC}/ep/{BOB}/x.request", content=b'{"sender": "bob"}')

    # The forged requests were rejected: renamed locally, never stored by the server.
    for folder in (MALLORY, ALICE):
        rejected = f"{ALICE}/{RPC}/ep/{folder}/forged{REJECTED_SUFFIX}.request"
        net.wait_for_file(BOB, rejected)
        assert not (bob_ep / folder / "forged.request").exists()
        assert not net.server_file(f"{ALICE}/{RPC}/ep/{folder}/forged.request").exists()
        assert not (net.datasites(ALICE) / ALICE / RPC / "ep" / folder / "forged.request").exists()

    # Bob cannot read the permission file or anything outside his folder.
    assert not (net.datasites(BOB) / ALICE / RPC / PERM_FILE).exists()

    # Alice answers; the response reaches bob (and only bob).
    alice_ep = net.datasites(ALICE) / ALICE / RPC / "ep"
    write_atomic(alice_ep / MALLORY / "m.response", b"not for bob")
    write_atomic(alice_ep / BOB / "x.response", b'{"status": 200}')
    net.wait_for_file(BOB, f"{ALICE}/{RPC}/ep/{BOB}/x.response", content=b'{"status": 200}')
    assert not (bob_ep / MALLORY / "m.response").exists()

    # Bob deletes both files (as syft-rpc's resolve() does); the deletes reach the server.
    (bob_ep / BOB / "x.request").unlink()
    (bob_ep / BOB / "x.response").unlink()
    deadline = time.monotonic() + 30
    server_dir = net.server_file(f"{ALICE}/{RPC}/ep/{BOB}")
    while any((server_dir / n).exists() for n in ("x.request", "x.response")):
        assert time.monotonic() < deadline, "bob's deletes did not reach the server"
        time.sleep(0.1)
    time.sleep(2.5)  # two more sync passes: a rejected delete would re-download the file
    assert not (bob_ep / BOB / "x.response").exists()
    assert not (bob_ep / BOB / "x.request").exists()


def test_client_restart_catches_up(syftbox_network: SyftBoxNetwork) -> None:
    net = syftbox_network
    shared = net.datasites(ALICE) / ALICE / "public"
    net.stop_client(BOB)
    assert not net.is_running(BOB)
    write_atomic(shared / "while_offline.txt", b"you were away")
    net.wait_on_server(f"{ALICE}/public/while_offline.txt")
    assert not (net.datasites(BOB) / ALICE / "public" / "while_offline.txt").exists()

    net.start_client(BOB)
    net.wait_for_file(BOB, f"{ALICE}/public/while_offline.txt", content=b"you were away")
