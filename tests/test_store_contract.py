"""The store contract suite, run against every built-in store."""

from __future__ import annotations

from pathlib import Path

import pytest

from syft_chat.plugins.memory import MemoryStore
from syft_chat.plugins.sqlite.store import SQLiteStore
from syft_chat.testing.store_contract import OWNER, StoreContract
from syft_chat.testing.view_contract import ViewStoreContract


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "chat.db", owner=OWNER)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore(owner=OWNER)


class TestSQLiteViews(ViewStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "chat.db", owner=OWNER)
