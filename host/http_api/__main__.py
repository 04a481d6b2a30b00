"""The HTTP process: ``python -m modelhost.host.http_api --fd N --parent PID``, started by the daemon only.

Reads its ``HttpSettings`` (one JSON line) from stdin, arranges to die with the daemon (Linux's
PR_SET_PDEATHSIG, and a check that the daemon is still its parent), and serves the app with uvicorn
on the listening socket the daemon bound and handed down as fd N. SIGTERM (the daemon stopping it)
lets in-flight requests finish for up to 5 s, then cancels them, which cancels their generations.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys

from modelhost.host.http_api.settings import HttpSettings

_PR_SET_PDEATHSIG = 1
GRACEFUL_SHUTDOWN_S = 5


def _die_with(parent_pid: int) -> None:
    """SIGTERM to this process when the daemon's thread that started it ends (the daemon's main thread)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the daemon's stop is the only way out
        pass
    if os.getppid() != parent_pid:  # the daemon died before the prctl took effect
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhost.host.http_api")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, bound by the daemon")
    parser.add_argument("--parent", type=int, required=True, help="the daemon's pid")
    args = parser.parse_args(argv)
    _die_with(args.parent)
    settings = HttpSettings.from_json(sys.stdin.readline())
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    import uvicorn

    from modelhost.host.http_api.app import create_app

    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(create_app(settings), lifespan="on", access_log=False, log_config=None,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
