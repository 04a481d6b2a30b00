"""CURVE encryption for TCP: key files, and the keys a client uses (the host's side is ``host.security``).

Both sides read key files through this module. Key files are ZeroMQ certificates as
``zmq.auth`` writes them: ``NAME.key`` holds the public key (share it), ``NAME.key_secret`` the
public and the secret key (mode 0600, never shared). ``modelhost keys DIR`` writes a pair.

* The host loads its pair from ``[host] curve_secret_key`` and, optionally, an allow-list folder of
  client public keys (``curve_clients``): ``host.security``.
* A client pins the host's public key (``server_key=``, else $MODELHOST_SERVER_KEY: a key file or
  the 40-character key itself) and uses $MODELHOST_CLIENT_KEY (a secret key file) or a fresh
  key pair of its own.

Nothing here runs on a thread of its own.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85

from modelhost.client.protocol.errors import ModelhostError

SERVER_KEY_ENV = "MODELHOST_SERVER_KEY"
CLIENT_KEY_ENV = "MODELHOST_CLIENT_KEY"
DEFAULT_KEY_NAME = "modelhost"

_Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


class KeyFileError(ModelhostError, ValueError):
    """A CURVE key or key file is missing, unreadable, malformed or too open; the message says which and how to fix it."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both keys as 40-byte z85 text."""

    public: bytes
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class ClientCurve:
    """A client's CURVE set-up: the host's pinned public key and the client's own pair."""

    server_public: bytes
    keys: KeyPair
    ephemeral: bool  # the client's pair was made for this connection (no $MODELHOST_CLIENT_KEY)


def write_key_pair(folder: str | os.PathLike, name: str = DEFAULT_KEY_NAME) -> tuple[Path, Path]:
    """Write ``folder/NAME.key`` (public, 0644) and ``folder/NAME.key_secret`` (0600); never overwrite a key."""
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"key name {name!r} must be a plain file name like \"modelhost\" or \"alice\"")
    folder = Path(folder).expanduser()
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} already exists; remove it first or choose another --name")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        old_umask = os.umask(0o177)  # both files are born 0600: the secret is never readable by others
        try:
            zmq.auth.create_certificates(folder, name)
        finally:
            os.umask(old_umask)
        os.chmod(public, 0o644)
    except OSError as exc:
        raise KeyFileError(f"cannot write a key pair in {folder}: {exc.strerror or exc}") from None
    return public, secret


def load_public_key(spec: str | bytes | os.PathLike) -> bytes:
    """A public key from a key file (``.key`` or ``.key_secret``), the 40-character z85 text, or 32 raw bytes."""
    if isinstance(spec, bytes):
        if len(spec) == 32:
            return zmq.utils.z85.encode(spec)
        text = spec.decode("ascii", "replace")
        if _Z85_KEY.fullmatch(text):
            return spec
        raise KeyFileError("a CURVE key given as bytes must be 32 raw bytes or 40 characters of z85 text")
    text = os.fspath(spec)
    if _Z85_KEY.fullmatch(text) and not os.path.exists(text):
        return text.encode("ascii")
    public, _ = read_key_file(Path(text).expanduser(), "public")
    return public


def load_key_pair(path: str | os.PathLike) -> KeyPair:
    """The pair in a ``.key_secret`` file; refused if the file is readable by group or others."""
    path = Path(path).expanduser()
    public, secret = read_key_file(path, "secret")
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key; give the .key_secret file that `modelhost keys` wrote")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"secret key file {path} is readable by others (mode {mode:04o}); run `chmod 600 {path}`")
    return KeyPair(public, secret)


def client_curve(server_key: str | bytes | os.PathLike | None = None, client_key: str | os.PathLike | None = None) -> ClientCurve | None:
    """The client's CURVE set-up: ``server_key`` (else $MODELHOST_SERVER_KEY) pinned, ``client_key``
    (else $MODELHOST_CLIENT_KEY, else a fresh pair) as the client's own. None when no server key is known."""
    server_key = server_key if server_key is not None else os.environ.get(SERVER_KEY_ENV) or None
    if server_key is None:
        return None
    server_public = load_public_key(server_key)
    client_key = client_key if client_key is not None else os.environ.get(CLIENT_KEY_ENV) or None
    if client_key is None:
        public, secret = zmq.curve_keypair()
        return ClientCurve(server_public, KeyPair(public, secret), ephemeral=True)
    return ClientCurve(server_public, load_key_pair(client_key), ephemeral=False)


def use_client_curve(sock: zmq.Socket, curve: ClientCurve) -> None:
    """Make ``sock`` (not yet connected) a CURVE client that accepts only the pinned host."""
    sock.curve_serverkey = curve.server_public
    sock.curve_publickey = curve.keys.public
    sock.curve_secretkey = curve.keys.secret


def read_key_file(path: Path, which: str) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except FileNotFoundError:
        raise KeyFileError(f"CURVE {which} key file {path} does not exist; write a pair with `modelhost keys DIR`") from None
    except OSError as exc:
        if not path.exists():
            raise KeyFileError(f"CURVE {which} key file {path} does not exist; write a pair with `modelhost keys DIR`") from None
        raise KeyFileError(f"cannot read CURVE {which} key file {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{path} is not a CURVE key file (no public-key line); write one with `modelhost keys DIR`") from None
    for key in (public, secret):
        if key is not None and not _Z85_KEY.fullmatch(key.decode("ascii", "replace")):
            raise KeyFileError(f"{path} holds a malformed CURVE key (not 40 characters of z85); write a new pair with "
                               "`modelhost keys DIR`")
    return public, secret
