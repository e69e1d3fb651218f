"""The ``syft-chat`` command's first step: hold a stop signal that comes while it starts.

Importing syft-chat and the SyftBox libraries takes a few hundred milliseconds. A SIGINT
or SIGTERM in that time used to kill ``syft-chat serve`` before it could stop cleanly
(or print a traceback). This module lives outside the package, so importing it costs
nothing; :func:`main` records such a signal while the rest is imported, and the
long-running commands (``serve``, ``listen``, ``web``) stop at once, cleanly, when they
find one (:func:`stop_requested`). A short command just runs to its end.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from types import FrameType

__all__ = ["main", "stop_requested"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _hold(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def stop_requested() -> bool:
    """Whether SIGINT or SIGTERM came while the command was starting."""
    return bool(_received)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``syft-chat`` command line (see :func:`syft_chat.__main__.main`)."""
    previous = {sig: signal.signal(sig, _hold) for sig in _STOP_SIGNALS}
    try:
        import syft_chat.cli  # noqa: F401  (the slow part: the commands and what they use)
        from syft_chat.__main__ import main as run
    finally:  # from here on the commands' own handlers (or the defaults) act
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
