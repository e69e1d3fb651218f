"""``python -m syft_chat``: the demo and a plugin diagnostic."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _plugins() -> int:
    from .manager import make_plugin_manager

    pm, failures = make_plugin_manager()
    print(f"interpreter: {sys.executable} (Python {sys.version.split()[0]})")
    print("plugins:")
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        print(f"  {name}: {', '.join(hooks)}")
    if failures:
        print("failed:")
        for failure in failures:
            print(f"  {failure}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="syft-chat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a conversation on a temporary local workspace")
    demo.add_argument("--keep", action="store_true", help="keep the workspace folder")
    sub.add_parser("plugins", help="list the plugins that load, and those that failed")
    sub.add_parser("hooks", help="print the hook reference (Markdown)")
    args = parser.parse_args(argv)
    if args.command == "hooks":
        from .docs import hook_reference

        print(hook_reference(), end="")
        return 0
    if args.command == "demo":
        from .demo import run_demo

        run_demo(keep=args.keep)
        return 0
    return _plugins()


if __name__ == "__main__":
    raise SystemExit(main())
