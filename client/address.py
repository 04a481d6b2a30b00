"""Where the host listens: the default per-user ipc:// path, and the rules for operator-given addresses.

Both sides use this module, so a client with no configuration finds a host started with none.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

ADDRESS_ENV = "MODELHOST_ADDRESS"
TOKEN_ENV = "MODELHOST_TOKEN"
SOCKET_NAME = "host.sock"

_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Address:
    """A parsed ``ipc://PATH`` or ``tcp://HOST:PORT`` address."""

    url: str
    scheme: str  # "ipc" or "tcp"
    path: str | None = None  # ipc only
    host: str | None = None  # tcp only
    port: int | None = None  # tcp only

    @property
    def is_tcp(self) -> bool:
        return self.scheme == "tcp"


def runtime_dir() -> str:
    """The per-user folder for the default socket: $XDG_RUNTIME_DIR/modelhost, else /tmp/modelhost-$UID."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "modelhost")
    return os.path.join("/tmp", f"modelhost-{os.getuid()}")


def default_address() -> str:
    """$MODELHOST_ADDRESS if set, else the per-user ipc:// socket path."""
    return os.environ.get(ADDRESS_ENV) or f"ipc://{os.path.join(runtime_dir(), SOCKET_NAME)}"


def default_token() -> str | None:
    """$MODELHOST_TOKEN if set (needed to reach a TCP host)."""
    return os.environ.get(TOKEN_ENV) or None


def parse_address(url: str) -> Address:
    """Parse and check an address; raise ValueError with a fix-it message if it is not allowed.

    ipc:// paths must be absolute. tcp:// is allowed on loopback only (127.0.0.0/8, ::1, localhost):
    a host reachable from other machines would need transport encryption this version lacks.
    """
    if url.startswith("ipc://"):
        path = url[len("ipc://"):]
        if not path.startswith("/"):
            raise ValueError(f"ipc address {url!r} needs an absolute path, like ipc:///run/user/1000/modelhost/host.sock")
        return Address(url=url, scheme="ipc", path=path)
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port if _has_port(parts) else None
        if not host or port is None:
            raise ValueError(f"tcp address {url!r} needs a host and a port, like tcp://127.0.0.1:5555")
        if not _is_loopback(host):
            raise ValueError(
                f"tcp address {url!r} is not on loopback: modelhost listens on 127.0.0.1 or ::1 only; "
                "use an ipc:// path, or tcp://127.0.0.1:PORT"
            )
        return Address(url=url, scheme="tcp", host=host, port=port)
    raise ValueError(f"address {url!r} must start with ipc:// or tcp://")


def _has_port(parts) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
