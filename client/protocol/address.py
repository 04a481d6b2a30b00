"""Where the host listens: the default per-user ipc:// path, and the rules for operator-given addresses.

Both sides use this module, so a client with no configuration finds a host started with none.
Parsing checks the form only; who may listen where (non-loopback TCP needs CURVE) is decided by the
host's config and, for clients, by ``client.connection``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

ADDRESS_ENV = "MODELHOST_ADDRESS"
TOKEN_ENV = "MODELHOST_TOKEN"
SOCKET_NAME = "host.sock"
# A Unix socket path lives in sockaddr_un.sun_path: 108 bytes on Linux, one of them the final NUL.
IPC_PATH_MAX_BYTES = 107

_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Address:
    """A parsed ``ipc://PATH`` or ``tcp://HOST:PORT`` address (IPv6 hosts in brackets: ``tcp://[::1]:5555``)."""

    url: str
    scheme: str  # "ipc" or "tcp"
    path: str | None = None  # ipc only
    host: str | None = None  # tcp only, without brackets
    port: int | None = None  # tcp only

    @property
    def is_tcp(self) -> bool:
        return self.scheme == "tcp"

    @property
    def is_ipv6(self) -> bool:
        """A TCP address whose host is an IPv6 literal: its socket needs zmq.IPV6."""
        return self.host is not None and ":" in self.host

    @property
    def is_loopback(self) -> bool:
        """ipc://, or TCP on 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) or localhost: unreachable from other machines."""
        return self.scheme == "ipc" or (self.host is not None and is_loopback_host(self.host))


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


def parse_address(url: object) -> Address:
    """Parse and check an address's form; raise ValueError with a fix-it message if it cannot work.

    ipc:// paths must be absolute and fit a Unix socket address (107 bytes). tcp:// needs a host and
    a port; an IPv6 host goes in brackets.
    """
    if not isinstance(url, str):
        raise ValueError(f"an address must be a string like \"ipc:///run/user/1000/modelhost/host.sock\" or "
                         f"\"tcp://127.0.0.1:5555\", got {url!r} ({type(url).__name__})")
    if url.startswith("ipc://"):
        path = url[len("ipc://"):]
        if not path.startswith("/"):
            raise ValueError(f"ipc address {url!r} needs an absolute path, like ipc:///run/user/1000/modelhost/host.sock")
        size = len(os.fsencode(path))
        if size > IPC_PATH_MAX_BYTES:
            raise ValueError(f"ipc path {path!r} is {size} bytes, over the {IPC_PATH_MAX_BYTES}-byte limit of a Unix "
                             "socket path; choose a shorter one")
        return Address(url=url, scheme="ipc", path=path)
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        if parts.netloc.count(":") > 1 and "[" not in parts.netloc:
            raise ValueError(f"tcp address {url!r}: an IPv6 host goes in brackets, like tcp://[::1]:5555")
        host, port = parts.hostname, _port(parts)
        if not host or not port or parts.path or parts.query or parts.fragment:
            raise ValueError(f"tcp address {url!r} needs a host and a port (1-65535), like tcp://127.0.0.1:5555 "
                             "or tcp://[::1]:5555")
        return Address(url=url, scheme="tcp", host=host, port=port)
    raise ValueError(f"address {url!r} must start with ipc:// or tcp://")


def _port(parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
