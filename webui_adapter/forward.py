"""``Forwarder``: runs a WebUI's MusicGen/AudioGen, MAGNeT or RVC call on the host and returns TTS-WebUI's shapes.

Shared by the decorator extension (``main.py``), the old-WebUI patch (``patch.py``) and the light UI
(``ui.py``, which also plays MusicGen/AudioGen audio as it is made, through ``stream``). Runs in the
WebUI's request thread; one client (one socket, one I/O thread) per process, shared by every
thread, created on first use and kept across host restarts (ZeroMQ reconnects).

Nothing needs configuring: the WebUI's model names go to the host as they are (see ``routing``).
Settings come from the environment, so a WebUI needs no new config file:

* ``MODELHOST_ADDRESS`` / ``MODELHOST_TOKEN``: which host (default: this user's local socket);
* ``MODELHOST_WEBUI_MODELS``: ``WEBUI_NAME=HOST_MODEL,...``, only where a hand-written catalog names
  a model differently and nothing else finds it;
* ``MODELHOST_WEBUI_FALLBACK=local``: when no host answers, or it serves no model for the WebUI's
  choice, run the WebUI's own (in-process) function instead of failing.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Mapping

import numpy as np

from modelhost.client import Client, GenerateResult, HostUnavailableError, RequestError, UnknownModelError, webui_call
from modelhost.client.protocol.address import default_address
from webui_adapter import convert, routing
from webui_adapter.webui_facts import AUDIOGEN_HUB_ID, MODEL_MAP_ENV
from webui_adapter.progress import ProgressFn



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
            model_map=routing.parse_model_map(env.get(MODEL_MAP_ENV)),
            fallback_local=fallback == "local",
        )


@dataclass(frozen=True)
class Forwarded:
    """A call's result in the WebUI's layout, and what the host did (for metadata and logs)."""

    audio_out: tuple[int, np.ndarray]  # (rate, float32 (T,) or (T, C)) for MusicGen/AudioGen/MAGNeT, (rate, int16 (T,)) for RVC
    tokens: np.ndarray | None  # MusicGen's and MAGNeT's (K, T) codes; None for AudioGen and RVC
    model: str
    params: dict[str, Any]
    info: dict[str, Any]
    timings_ns: dict[str, int]
    notes: list[str]

    def webui_output(self, kind: str) -> dict[str, Any]:
        """What the WebUI's own function returns: ``{"audio_out", "tokens"}`` (a torch tensor) or ``{"audio_out"}``."""
        if kind == "rvc":
            return {"audio_out": self.audio_out}
        return {"audio_out": self.audio_out, "tokens": convert.tokens_tensor(self.tokens)}


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

    def memory(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The host's ``ps`` rows and devices; HostDownError if no host answers."""
        try:
            return self.client.ps(timeout_s=10), self.client.devices(timeout_s=10)
        except HostUnavailableError as exc:
            raise self._host_down(exc) from None

    def manage(self, action: str, name: str) -> str:
        """``load``, ``unload``, ``pin`` or ``unpin`` one host model; one line saying what happened."""
        call = {"load": self.client.load, "unload": self.client.unload, "pin": self.client.pin, "unpin": self.client.unpin}[action]
        try:
            status = call(name)
        except HostUnavailableError as exc:
            raise self._host_down(exc) from None
        except RequestError as exc:
            return f"{name}: {exc.message}"
        pinned = " (pinned)" if status.get("pinned") else ""
        return f"{name}: {status.get('state', 'done')}{pinned}"

    def unload(self, names: list[str]) -> list[str]:
        """Unload these host models; returns one line per model saying what happened."""
        lines = []
        for name in names:
            try:
                self.client.unload(name)
                lines.append(f"{name}: unloaded")
            except HostUnavailableError as exc:
                raise self._host_down(exc) from None
            except RequestError as exc:
                lines.append(f"{name}: {exc.message}")
        return lines

    def forward(self, kind: str, kw: Mapping[str, Any], progress: ProgressFn | None = None) -> Forwarded:
        """Run a ``kind`` ("musicgen", "magnet" or "rvc": the WebUI's ``_type``) call with TTS-WebUI parameters
        ``kw`` on the host."""
        models: list[dict[str, Any]] = []
        route = None
        try:
            models, route, call = self._route(kind, kw)
            result = self.client.generate(route.name, call.prompt, audio=call.audio, sample_rate=call.sample_rate,
                                          params=call.params, progress=progress)
        except _HOST_ERRORS as exc:
            raise self._translated(exc, kind, route, models) from None
        return _forwarded(kind, route, call, result)

    def stream(self, kind: str, kw: Mapping[str, Any], progress: ProgressFn | None = None) -> "ForwardStream":
        """``forward``, with the audio delivered as the host makes it (MusicGen/AudioGen): see ``ForwardStream``."""
        return ForwardStream(self._streamed(kind, kw, progress))

    def _streamed(self, kind: str, kw: Mapping[str, Any], progress: ProgressFn | None) -> Generator[Any, None, Forwarded]:
        models: list[dict[str, Any]] = []
        route = None
        try:
            models, route, call = self._route(kind, kw)
            job = self.client.stream(route.name, call.prompt, audio=call.audio, sample_rate=call.sample_rate,
                                     params=call.params, progress=progress)
            try:
                for chunk in job:
                    yield int(chunk.sample_rate), convert.webui_layout(chunk.audio, np.float32)
                result = job.result()
            finally:
                job.close()  # nothing once the stream has ended; otherwise (the page went away) the host stops
        except _HOST_ERRORS as exc:
            raise self._translated(exc, kind, route, models) from None
        return _forwarded(kind, route, call, result)

    def _route(self, kind: str, kw: Mapping[str, Any]) -> tuple[list[dict[str, Any]], routing.Route, convert.HostCall]:
        """The host's models, the one this call goes to, and the request for it."""
        # ps per call (a fraction of a millisecond beside a generation) so a catalog change or a
        # restarted host is seen at once, with no cache to go stale
        models = self.models()
        route = routing.resolve(kind, kw.get(convert.MODEL_KEY[kind]), models, self.settings.model_map)
        return models, route, self._host_call(kind, kw, route)

    def _translated(self, exc: Exception, kind: str, route: routing.Route | None, models: list[dict[str, Any]]) -> Exception:
        """What a call's failure is in the WebUI's terms: HostDownError, NotServedError or ForwardError."""
        if isinstance(exc, HostUnavailableError):
            return self._host_down(exc)
        if isinstance(exc, routing.NotServedError):
            return NotServedError(f"modelhost: {exc}")
        if isinstance(exc, UnknownModelError):
            message = routing.not_served_message(kind, route.name if route else "?", exc.message, models)
            return NotServedError(f"modelhost: {message}")
        if isinstance(exc, (convert.InputError, routing.NoChoiceError)):
            return ForwardError(f"modelhost: {exc}")
        assert isinstance(exc, RequestError)
        return ForwardError(f"modelhost: {exc.message} [{exc.code}]")

    def call_or_fallback(self, kind: str, kw: Mapping[str, Any], local: Callable[[], Any],
                         progress: ProgressFn | None = None) -> dict[str, Any]:
        """``forward(...).webui_output()``; with the fallback on, ``local()`` where the host cannot serve the call."""
        try:
            return self.forward(kind, kw, progress).webui_output(kind)
        except (HostDownError, NotServedError) as exc:
            if self.settings.fallback_local:
                print(f"modelhost: running this {kind} call in the WebUI (MODELHOST_WEBUI_FALLBACK=local): {exc}",
                      file=sys.stderr, flush=True)
                return local()
            raise

    # ---- the WebUI's other calls, in its WebUI runners (runner_calls, host.backends.webui_call) ----

    def call_webui(self, model: str, key: str, kind: Any, kw: Mapping[str, Any]) -> Any:
        """Run the WebUI function ``key`` with keyword arguments ``kw`` in the WebUI runner ``model``; what it returns.
        NotServedError where the host has no such runner (a host without ``--webui``), HostDownError, ForwardError."""
        try:
            result = self.client.generate(model, None, params=_call_params(key, kind, kw))
        except _HOST_ERRORS as exc:
            raise self._runner_error(exc, model) from None
        return webui_call.decode(result.info.get("value"))

    def stream_webui(self, model: str, key: str, kind: Any, kw: Mapping[str, Any]) -> Iterator[Any]:
        """``call_webui`` for a generator function: its items as the runner yields them. Closing this generator (the
        WebUI's event was cancelled) cancels the call, and the runner closes the WebUI's generator."""
        try:
            job = self.client.stream(model, None, params=_call_params(key, kind, kw))
        except _HOST_ERRORS as exc:
            raise self._runner_error(exc, model) from None
        try:
            for chunk in job:
                yield webui_call.decode(chunk.item)
            job.result()
        except _HOST_ERRORS as exc:
            raise self._runner_error(exc, model) from None
        finally:
            job.close()

    def unload_webui(self, model: str, namespace: str | None) -> None:
        """The WebUI's Unload for ``namespace`` (None: all) in the WebUI runner ``model``, if it runs; a runner left
        holding no model ends (its process's exit frees everything)."""
        try:
            row = next((m for m in self.client.ps(timeout_s=10) if m.get("name") == model), None)
            if row is None or row.get("state") not in ("ready", "loading"):  # no runner to tell
                return
            name = "unload_model" if namespace is not None else "unload_all_models"
            kwargs = {"model_namespace": namespace, "silent": True} if namespace is not None else {}
            result = self.client.generate(model, None, params={webui_call.CALL: f"{MODEL_STATE_KEY}:{name}",
                                                                webui_call.KWARGS: kwargs})
            if not result.info.get("holds"):
                self.client.unload(model)
        except _HOST_ERRORS as exc:
            print(f"modelhost: the WebUI runner {model} was not told to unload: {self._runner_error(exc, model)}",
                  file=sys.stderr, flush=True)

    def _runner_error(self, exc: Exception, model: str) -> Exception:
        if isinstance(exc, HostUnavailableError):
            return self._host_down(exc)
        if isinstance(exc, UnknownModelError):
            return NotServedError(f"modelhost: the host runs no WebUI runner {model!r} ({exc.message})")
        assert isinstance(exc, RequestError)
        if exc.code == "runner_lost":
            return ForwardError(f"modelhost: the WebUI runner {model!r} ended during this call ({exc.message}); "
                                "the next call starts it again")
        return ForwardError(f"modelhost ({model}): {exc.message}")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _host_call(self, kind: str, kw: Mapping[str, Any], route: routing.Route) -> convert.HostCall:
        if kind == "rvc":
            return convert.rvc_call(kw, index_mode=_index_mode(route))
        if kind == "magnet":
            return convert.magnet_call(kw)
        backend = route.backend or ("audiogen" if route.name == AUDIOGEN_HUB_ID else "musicgen")
        # the WebUI's own rule: a melody is used when the chosen name says "melody"
        wants_melody = "melody" in str(kw.get("model_name")) or "melody" in str(route.source.get("checkpoint"))
        return convert.musicgen_call(kw, wants_melody=wants_melody, wants_tokens=backend == "musicgen")

    def _host_down(self, exc: Exception) -> HostDownError:
        return HostDownError(
            f"modelhost: no host answers at {self.settings.address} ({exc}). Start it with "
            "`modelhost serve --webui YOUR_WEBUI_DIR` (or `systemctl --user start modelhost`), or point "
            "MODELHOST_ADDRESS at it; to run the model in this WebUI process instead while the host is down, "
            "set MODELHOST_WEBUI_FALLBACK=local."
        )


class ForwardStream:
    """A call streamed from the host: iterate it for ``(sample_rate, samples)`` in the WebUI's layout
    (float32 (T,) or (T, C)) as the host makes them, every couple of seconds of audio; afterwards
    ``result`` is the whole call's ``Forwarded`` (the exact, non-streamed audio). Raises what
    ``forward`` raises. Leaving the loop early (``close()``, or a closed generator) cancels the
    generation on the host. Iterated in the caller's thread."""

    def __init__(self, chunks: Generator[Any, None, Forwarded]) -> None:
        self._chunks = chunks
        self.result: Forwarded | None = None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self.result = yield from self._chunks

    def close(self) -> None:
        self._chunks.close()


_HOST_ERRORS = (HostUnavailableError, routing.NotServedError, convert.InputError, routing.NoChoiceError, RequestError)
MODEL_STATE_KEY = "tts_webui.utils.manage_model_state"  # the WebUI's Unload functions, taken by the runner by key


def _call_params(key: str, kind: Any, kw: Mapping[str, Any]) -> dict[str, Any]:
    """A WebUI call's generate params (``client.webui_call``); ValueError names a value that cannot travel."""
    params: dict[str, Any] = {webui_call.CALL: key, webui_call.KWARGS: webui_call.encode_kwargs(dict(kw))}
    if isinstance(kind, str):
        params[webui_call.TYPE] = kind
    return params


def _forwarded(kind: str, route: routing.Route, call: convert.HostCall, result: GenerateResult) -> Forwarded:
    """A host result in the WebUI's layout."""
    if kind == "rvc":
        audio_out = (int(result.sample_rate), convert.webui_layout(result.audio, np.int16))
    else:
        audio_out = (int(result.sample_rate), convert.webui_layout(result.audio, np.float32))
    tokens = result.info.get("tokens") if kind in ("musicgen", "magnet") else None
    info = {k: v for k, v in result.info.items() if k != "tokens"}
    return Forwarded(audio_out, tokens, route.name, call.params, info, result.timings_ns, call.notes)


def as_ui_error(exc: Exception) -> Exception:
    """The error to raise inside a Gradio handler: a ``gr.Error`` (Gradio shows its message in the UI;
    other exceptions only as "Error"), where Gradio is loaded."""
    gradio = sys.modules.get("gradio")
    if gradio is not None and hasattr(gradio, "Error"):
        return gradio.Error(str(exc))
    return exc


def _index_mode(route: routing.Route) -> str:
    """How this voice takes the WebUI's index choice (see ``convert.rvc_call``)."""
    if route.row is None or route.source.get("index_root"):
        return "param"  # a WebUI voice: the host finds the index the WebUI names
    return "catalog" if route.source.get("index") else "none"
