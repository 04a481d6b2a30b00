"""The host's side of CURVE: its key pair and client allow-list (``[host] curve_secret_key``, ``curve_clients``),
and ``HostContext``, the ZeroMQ context that runs the ZAP authenticator for the clients' socket.

Without an allow-list the host accepts any client that knows its public key (then a token authenticates
clients). Runs in the main thread at start; the authenticator runs in ``zmq.auth``'s own thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth

from modelhost.client.protocol.security import KeyFileError, KeyPair, load_key_pair, read_key_file

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator


@dataclass(frozen=True)
class HostCurve:
    """The host's CURVE set-up: its own key pair and the allow-list folder (None: any client with the host's key)."""

    keys: KeyPair
    clients_dir: str | None = None


def load_allow_list(folder: str | os.PathLike) -> list[bytes]:
    """The client public keys in ``folder/*.key``; at least one, each valid."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise KeyFileError(f"curve_clients folder {folder} does not exist; put each allowed client's NAME.key there")
    keys = [read_key_file(path, "public")[0] for path in sorted(folder.glob("*.key"))]
    if not keys:
        raise KeyFileError(f"curve_clients folder {folder} holds no *.key files; copy each allowed client's public "
                           "NAME.key there (from `modelhost keys DIR --name NAME` on the client)")
    return keys


def host_curve(secret_key_file: str | os.PathLike, clients_dir: str | os.PathLike | None) -> HostCurve:
    """The host's CURVE set-up, every file checked now (so a bad one fails the start, not a handshake)."""
    keys = load_key_pair(secret_key_file)
    if clients_dir is not None:
        load_allow_list(clients_dir)
    return HostCurve(keys, None if clients_dir is None else os.fspath(Path(clients_dir).expanduser()))


class HostContext(zmq.Context):
    """The host's ZeroMQ context: it runs the CURVE authenticator, and stops it before terminating
    (the authenticator's own sockets would otherwise keep ``term()`` waiting forever)."""

    _authenticator: ThreadAuthenticator | None = None

    def serve_curve(self, sock: zmq.Socket, curve: HostCurve) -> None:
        """Make ``sock`` (not yet bound) a CURVE server; clients are checked against the allow-list, if any."""
        from zmq.auth.thread import ThreadAuthenticator  # host side only: clients never start one

        if self._authenticator is None:
            self._authenticator = ThreadAuthenticator(self)
            self._authenticator.start()
        self._authenticator.configure_curve(domain="*", location=curve.clients_dir or zmq.auth.CURVE_ALLOW_ANY)
        sock.curve_server = True
        sock.curve_publickey = curve.keys.public
        sock.curve_secretkey = curve.keys.secret

    def term(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        super().term()
