"""``Forwarder``: runs a WebUI's MusicGen/AudioGen or RVC call on the host and returns TTS-WebUI's shapes.

Shared by the decorator extension (``main.py``), the old-WebUI patch (``patch.py``) and the light UI
(``ui.py``). Runs in the WebUI's request thread; one client (one socket, one I/O thread) per process,
shared by every thread, created on first use and kept across host restarts (ZeroMQ reconnects).

Settings come from the environment, so a WebUI needs no new config file:

* ``MODELHOST_ADDRESS`` / ``MODELHOST_TOKEN``: which host (default: this user's local socket);
* ``MODELHOST_WEBUI_MODELS``: ``WEBUI_NAME=HOST_MODEL,...`` where names differ (see ``routing``);
* ``MODELHOST_WEBUI_FALLBACK=local``: when no host answers, or it serves no model for the WebUI's
  choice, run the WebUI's own (in-process) function instead of failing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from modelhost.client import Client, HostUnavailableError, RequestError
from modelhost.client.address import default_address
from webui_adapter import convert, routing

ProgressFn = Callable[[int, int], None]


def console_progress(step: int, total: int) -> None:
    """Host progress on the console, as audiocraft prints it with ``progress=True``."""
    if total > 1:  # an RVC conversion has no steps to show
        print(f"\r{step: 6d} / {total: 6d}", end="\n" if step >= total else "", flush=True)


class HostDownError(RuntimeError):
    """No modelhost host answered; the message says how to start one (or to enable the fallback)."""


class ForwardError(RuntimeError):
    """The host could not run this call (bad parameter, model it does not serve, ...); says what to fix."""


class NotServedError(ForwardError):
    """The host serves no model for the WebUI's choice; the message lists what it serves."""


@dataclass(frozen=True)
class Settings:
    address: str
    token: str | None
    model_map: dict[str, str]
    fallback_local: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        fallback = env.get("MODELHOST_WEBUI_FALLBACK", "").strip().lower()
        if fallback not in ("", "off", "local"):
            raise ValueError(f"MODELHOST_WEBUI_FALLBACK must be 'local' or 'off', got {fallback!r}")
        return cls(
            address=env.get("MODELHOST_ADDRESS") or default_address(),
            token=env.get("MODELHOST_TOKEN") or None,
            model_map=routing.parse_model_map(env.get("MODELHOST_WEBUI_MODELS")),
            fallback_local=fallback == "local",
        )


@dataclass(frozen=True)
class Forwarded:
    """A call's WebUI-shaped result, and what the host did (for metadata and logs)."""

    output: dict[str, Any]
    model: str
    params: dict[str, Any]
    info: dict[str, Any]
    timings_ns: dict[str, int]
    notes: list[str]


class Forwarder:
    """Forwards WebUI calls to one host. Thread-safe."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client(self.settings.address, token=self.settings.token)
            return self._client

    def models(self) -> list[dict[str, Any]]:
        """The host's ``ps`` rows; HostDownError if no host answers."""
        try:
            return self.client.ps(timeout_s=10)
        except HostUnavailableError as exc:
            raise self._host_down(exc) from None

    def forward(self, kind: str, kw: Mapping[str, Any], progress: ProgressFn | None = None) -> Forwarded:
        """Run a ``kind`` ("musicgen" or "rvc") call with TTS-WebUI parameters ``kw`` on the host."""
        try:
            # ps per call (a fraction of a millisecond beside a generation) so a catalog change or a
            # restarted host is seen at once, with no cache to go stale
            model = routing.resolve(kind, kw.get(convert.MODEL_KEY[kind]), self.models(), self.settings.model_map)
            call = self._host_call(kind, kw, model)
            result = self.client.generate(model["name"], call.prompt, audio=call.audio, sample_rate=call.sample_rate,
                                          params=call.params, progress=progress)
        except HostUnavailableError as exc:
            raise self._host_down(exc) from None
        except routing.NotServedError as exc:
            raise NotServedError(f"modelhost: {exc}") from None
        except convert.InputError as exc:
            raise ForwardError(f"modelhost: {exc}") from None
        except RequestError as exc:
            raise ForwardError(f"modelhost: {exc.message} [{exc.code}]") from None
        if kind == "rvc":
            output = convert.rvc_output(result.audio, result.sample_rate)
        else:
            tokens = convert.tokens_tensor(result.info.get("tokens")) if model["backend"] == "musicgen" else None
            output = convert.musicgen_output(result.audio, result.sample_rate, tokens)
        info = {k: v for k, v in result.info.items() if k != "tokens"}
        return Forwarded(output, model["name"], call.params, info, result.timings_ns, call.notes)

    def call_or_fallback(self, kind: str, kw: Mapping[str, Any], local: Callable[[], Any],
                         progress: ProgressFn | None = None) -> dict[str, Any]:
        """``forward(...).output``; with the fallback on, ``local()`` where the host cannot serve the call."""
        try:
            return self.forward(kind, kw, progress).output
        except (HostDownError, NotServedError):
            if self.settings.fallback_local:
                return local()
            raise

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _host_call(self, kind: str, kw: Mapping[str, Any], model: Mapping[str, Any]) -> convert.HostCall:
        source = model.get("source") or {}
        if kind == "rvc":
            return convert.rvc_call(kw, voice_has_index=bool(source.get("index")))
        wants_melody = "melody" in str(kw.get("model_name")) or "melody" in str(source.get("checkpoint"))
        return convert.musicgen_call(kw, wants_melody=wants_melody, wants_tokens=model["backend"] == "musicgen")

    def _host_down(self, exc: Exception) -> HostDownError:
        return HostDownError(
            f"modelhost: no host answers at {self.settings.address} ({exc}). Start it with `modelhost serve` "
            "(or `systemctl --user start modelhost`), or point MODELHOST_ADDRESS at it; to run the model in this "
            "WebUI process instead while the host is down, set MODELHOST_WEBUI_FALLBACK=local."
        )
