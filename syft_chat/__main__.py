"""``python -m syft_chat`` and the ``syft-chat`` console script: see :mod:`syft_chat.cli`."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``syft-chat`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code: 0 on success, 1 for an error from syft-chat, 2 for a
    usage error or a missing SyftBox config, 3 when ``send``'s message was not
    confirmed in time (it stays stored and is delivered later).
    """
    from syft_chat.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
