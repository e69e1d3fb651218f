"""Render the hook reference (the hookspec docstrings) as Markdown.

``python -m syft_chat hooks`` prints it; ``plugins/README.md`` embeds it, and
a test keeps the two identical.
"""

from __future__ import annotations

import inspect

from syft_chat import hookspecs

__all__ = ["hook_names", "hook_reference"]


def hook_names() -> list[str]:
    """Every hookspec name, in the order they are defined."""
    return [
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("chat_") and inspect.isfunction(value)
    ]


def _signature(fn: object) -> str:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(sig.parameters)
    return f"{fn.__name__}({params})"  # type: ignore[attr-defined]


def hook_reference() -> str:
    """The hook reference as Markdown."""
    out = ["## Hook reference", ""]
    for name in hook_names():
        fn = getattr(hookspecs, name)
        opts = hookspecs.hookspec.project_name, getattr(fn, "syft_chat_spec", {})
        flags = [k for k in ("firstresult", "historic") if opts[1].get(k)]
        suffix = f" ({', '.join(flags)})" if flags else ""
        out += [f"### `{_signature(fn)}`{suffix}", "", inspect.getdoc(fn) or "", ""]
    return "\n".join(out).rstrip() + "\n"
