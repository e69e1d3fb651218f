"""The transport contract suite, run against the built-in syft-rpc transport."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from syft_core import Client as SyftClient

from syft_chat.interfaces import BackendContext, Transport
from syft_chat.plugins.syft_rpc.transport import RpcTransport
from syft_chat.settings import ChatSettings
from syft_chat.testing import make_workspace
from syft_chat.testing.transport_contract import ALICE, BOB, TransportContract


class TestRpcTransport(TransportContract):
    @pytest.fixture
    def make_transport(self, tmp_path: Path) -> Callable[[str], Transport]:
        configs = make_workspace(tmp_path, [ALICE, BOB])

        def make(email: str) -> Transport:
            syft = SyftClient.load(configs[email])
            context = BackendContext(
                email, syft, "syft_chat", tmp_path / "unused.db", ChatSettings()
            )
            return RpcTransport(context)

        return make
