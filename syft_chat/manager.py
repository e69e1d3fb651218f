"""Plugin managers: one per client, built-ins and entry points registered the same way.

Environment switches, all read before any third-party plugin is imported:

``SYFT_CHAT_LOAD_PLUGINS``
    Comma-separated allow-list of distribution names whose ``syft_chat`` entry
    points are loaded. Unset: load all installed plugins. ``''``: load none.
``SYFT_CHAT_DISABLE_PLUGINS``
    Comma-separated deny-list of distribution names (or entry-point names).
``SYFT_CHAT_STRICT_PLUGINS``
    ``1``: a plugin that fails to load or validate raises :class:`PluginError`
    instead of being skipped (for plugin developers and tests).
``SYFT_CHAT_TRACE_PLUGINS``
    ``1``: log every hook call and its result at INFO on the
    ``syft_chat.trace`` logger.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from syft_chat import hookspecs
from syft_chat.errors import PluginError

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "entry_point_failures",
    "make_plugin_manager",
    "register_plugin",
]

log = logging.getLogger("syft_chat.plugins")

#: Entry-point group third-party plugins declare in their ``pyproject.toml``.
ENTRY_POINT_GROUP = "syft_chat"

#: Built-in plugins, registered through :func:`register_plugin` like any other.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "syft_chat.plugins.sqlite.store",
    "syft_chat.plugins.memory",
    "syft_chat.plugins.syft_rpc.transport",
    "syft_chat.plugins.discovery",
    "syft_chat.plugins.contact_policy",
    "syft_chat.plugins.json_codec",
)

_ESCAPE = (
    "set SYFT_CHAT_DISABLE_PLUGINS={name} to skip it, "
    "or SYFT_CHAT_LOAD_PLUGINS='' to load no plugins"
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, validated or run.

    ``plugin`` is the distribution name for entry points (or the plugin's
    registered name); ``stage`` is ``"import"``, ``"register"`` or the name of
    the hook that raised.
    """

    plugin: str
    stage: str
    error: str

    def __str__(self) -> str:
        return f"{self.plugin} ({self.stage}): {self.error}"


@dataclass(frozen=True)
class _EntryPointPlugin:
    name: str  # entry point name
    dist: str  # distribution name
    obj: Any


_lock = threading.Lock()
_loaded: dict[tuple[str, str], _EntryPointPlugin] = {}
_failed: dict[tuple[str, str], PluginFailure] = {}


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


def _strict() -> bool:
    return os.environ.get("SYFT_CHAT_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "<unknown distribution>"


def _entry_point_plugins() -> list[_EntryPointPlugin]:
    """Import the allowed ``syft_chat`` entry points, each once per process.

    The allow- and deny-lists are consulted before anything is imported. A
    failing import is recorded (see :func:`entry_point_failures`) and skipped.
    """
    allow = _env_list("SYFT_CHAT_LOAD_PLUGINS")
    deny = set(_env_list("SYFT_CHAT_DISABLE_PLUGINS") or [])
    if allow == []:
        return []
    plugins: list[_EntryPointPlugin] = []
    with _lock:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = _dist_name(ep)
            if allow is not None and dist not in allow and ep.name not in allow:
                continue
            if dist in deny or ep.name in deny:
                continue
            key = (dist, ep.name)
            if key in _failed:
                if _strict():
                    raise PluginError(str(_failed[key]))
                continue
            if key not in _loaded:
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin never kills the host
                    failure = PluginFailure(dist, "import", f"{type(exc).__name__}: {exc}")
                    _failed[key] = failure
                    log.warning(
                        "syft-chat plugin %s failed to load: %s (%s)",
                        dist,
                        failure.error,
                        _ESCAPE.format(name=dist),
                    )
                    if _strict():
                        raise PluginError(str(failure)) from exc
                    continue
                _loaded[key] = _EntryPointPlugin(ep.name, dist, obj)
            plugins.append(_loaded[key])
    return plugins


def entry_point_failures() -> list[PluginFailure]:
    """Entry points that failed to import in this process."""
    with _lock:
        return list(_failed.values())


def _reset_entry_point_cache() -> None:
    """Forget imported entry points (for tests that install fake distributions)."""
    with _lock:
        _loaded.clear()
        _failed.clear()


def register_plugin(
    pm: pluggy.PluginManager, plugin: object, name: str | None = None
) -> PluginFailure | None:
    """Register ``plugin`` and validate it; undo the registration if it is invalid.

    Returns ``None`` on success, or the :class:`PluginFailure` (also raised as
    :class:`PluginError` in strict mode).
    """
    label = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin):x}"
    try:
        pm.register(plugin, name=label)
        pm.check_pending()
    except Exception as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        failure = PluginFailure(label, "register", f"{type(exc).__name__}: {exc}")
        log.warning(
            "syft-chat plugin %s is invalid and was skipped: %s (%s)",
            label,
            failure.error,
            _ESCAPE.format(name=label),
        )
        if _strict():
            raise PluginError(str(failure)) from exc
        return failure
    return None


def make_plugin_manager(
    *, load_entry_points: bool = True
) -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """Build a fresh plugin manager with the built-in and installed plugins.

    Returns the manager and the plugins that failed to load or validate.
    Each call returns a new manager: two clients never share one.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    for module_name in DEFAULT_PLUGINS:
        module: ModuleType = importlib.import_module(module_name)
        failure = register_plugin(pm, module, name=module_name)
        if failure is not None:  # pragma: no cover - a broken built-in is a bug
            raise PluginError(str(failure))
    if load_entry_points:
        failures.extend(entry_point_failures())
        for ep_plugin in _entry_point_plugins():
            if pm.is_registered(ep_plugin.obj):
                continue
            failure = register_plugin(pm, ep_plugin.obj, name=f"{ep_plugin.dist}:{ep_plugin.name}")
            if failure is not None:
                failures.append(PluginFailure(ep_plugin.dist, failure.stage, failure.error))
        # failures recorded during this call's imports
        for f in entry_point_failures():
            if f not in failures:
                failures.append(f)
    return pm, failures


def trace_enabled() -> bool:
    """Whether ``SYFT_CHAT_TRACE_PLUGINS`` asks for every hook call to be logged."""
    return os.environ.get("SYFT_CHAT_TRACE_PLUGINS", "").lower() in {"1", "true", "yes"}
