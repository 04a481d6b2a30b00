"""The light UI: a Gradio app that generates on the host, and a backend for TTS-WebUI's React UI.

It loads no model and imports no torch, so it starts in seconds, and any number of instances (on
4200, 4201, ...) share the host's resident models. Its Gradio API is the one the React UI's
MusicGen/AudioGen and RVC pages call (``react-ui/src/pages/api/gradio/[name].tsx`` in
rsxdalv/TTS-WebUI 8c9046b), with the WebUI's names and shapes:

* ``/musicgen`` (text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed,
  use_multi_band_diffusion) and ``/rvc`` (pitch_up_key, original_audio_path, index_path,
  pitch_collection_method, model_path, index_rate, filter_radius, resample_sr, rms_mix_rate,
  protect), each returning [audio, metadata, folder_root]; the result is saved under the WebUI root
  in the WebUI's output layout (``outputs.py``), so React's History and Favorites show it;
* ``/musicgen_audiogen_get_models``, ``/rvc_model_reload``, ``/rvc_index_reload``: a choices update
  (``[[label, value], ...]``) read from the WebUI root and the host's ``ps`` (``webui_models.py``);
* ``/musicgen_audiogen_unload_model``, ``/rvc_unload_model`` (and ``/rvc_model_unload``, the name in
  React's own route table): unload those models on the host;
* ``/musicgen_audiogen_open_model_dir``, ``/rvc_model_open``, ``/rvc_index_open``: the folder's path
  (a headless host cannot open a window);
* ``/bark_favorite`` (folder_root): React's Favorite button; the result's folder is copied to
  ``favorites/`` (which React's Favorites page lists), as the WebUI's history extension does.

The page's own Generate button plays MusicGen/AudioGen audio as the host makes it: a streaming
``gr.Audio`` (Gradio plays the chunks through HLS; it re-encodes each one with ffmpeg, so the player
is there only where ffmpeg and ffprobe are installed) fed chunk by chunk from ``Forwarder.stream``,
then the whole result, saved exactly as ``/musicgen`` saves it. ``/musicgen`` itself stays whole:
React and the WebUI's chain cannot stream.

Model and index inputs accept any value (React opens a new Gradio session per call, so a choice
list could never be current); the host says clearly when it serves no such model. Handlers run in
Gradio's worker threads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from webui_adapter import convert, host_tab, outputs, routing, webui_models
from webui_adapter.forward import ForwardError, Forwarder, HostDownError

PITCH_METHODS = ["harvest", "pm", "crepe", "rmvpe", "fcpe"]
MUSICGEN_INPUTS = ("text", "melody", "model_name", "duration", "topk", "topp", "temperature", "cfg_coef", "seed",
                   "use_multi_band_diffusion")
RVC_INPUTS = ("pitch_up_key", "original_audio_path", "index_path", "pitch_collection_method", "model_path",
              "index_rate", "filter_radius", "resample_sr", "rms_mix_rate", "protect")


class Backend:
    """What the endpoints do, apart from Gradio's layout: generate and save, list, unload, name folders."""

    def __init__(self, fwd: Forwarder, root: Path) -> None:
        self.fwd = fwd
        self.root = Path(root).absolute()

    def generate(self, kind: str, kw: dict[str, Any], progress: gr.Progress) -> tuple[Any, dict[str, Any], str]:
        try:
            done = self.fwd.forward(kind, kw, progress=_report(progress))
        except (HostDownError, ForwardError) as exc:
            raise gr.Error(str(exc)) from None
        return self._save(kind, kw, done)

    def generate_live(self, kind: str, kw: dict[str, Any], progress: gr.Progress) -> Iterator[tuple[bytes | None, Any]]:
        """``generate`` with the audio as the host makes it: ``(wav_bytes, None)`` per chunk, then
        ``(None, (audio, metadata, folder_root))``, the whole result saved as ``generate`` saves it.
        Closing the iterator early (the page went away) stops the generation on the host."""
        stream = self.fwd.stream(kind, kw, progress=_report(progress))
        try:
            for rate, samples in stream:
                yield convert.wav_bytes(samples, rate), None
        except (HostDownError, ForwardError) as exc:
            raise gr.Error(str(exc)) from None
        finally:
            stream.close()
        assert stream.result is not None
        yield None, self._save(kind, kw, stream.result)

    def _save(self, kind: str, kw: dict[str, Any], done: Any) -> tuple[Any, dict[str, Any], str]:
        save = outputs.save_rvc if kind == "rvc" else outputs.save_musicgen
        metadata, folder_root = save(self.root, kw, done)
        return done.audio_out, metadata, folder_root

    def host_models(self) -> list[dict[str, Any]]:
        try:
            return self.fwd.models()
        except HostDownError as exc:
            raise gr.Error(str(exc)) from None

    def unload(self, kind: str) -> str:
        """Unload every model of this kind the host holds (the WebUI unloads its one model per kind)."""
        families = routing.FAMILIES[kind]
        held = [m["name"] for m in self.host_models()
                if m.get("backend") in families and m.get("state") in ("ready", "warm", "loading")]
        if not held:
            message = f"modelhost: the host holds no {'/'.join(families)} model"
        else:
            try:
                message = "modelhost: " + "; ".join(self.fwd.unload(held))
            except HostDownError as exc:
                raise gr.Error(str(exc)) from None
        gr.Info(message)
        return message

    def favorite(self, folder_root: str) -> str:
        try:
            saved = outputs.save_favorite(self.root, folder_root)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Saved to {saved}")
        return saved

    def folder(self, path: Path) -> str:
        gr.Info(f"Models folder: {path}")
        return str(path)


def build(fwd: Forwarder, root: Path) -> gr.Blocks:
    """The app (not launched); results are saved under the WebUI root ``root``."""
    be = Backend(fwd, root)

    def musicgen(text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed, use_multi_band_diffusion,
                 progress=gr.Progress()):
        values = (text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed, use_multi_band_diffusion)
        return be.generate("musicgen", dict(zip(MUSICGEN_INPUTS, values)), progress)

    def musicgen_live(text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed,
                      use_multi_band_diffusion, progress=gr.Progress()):
        values = (text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed, use_multi_band_diffusion)
        for chunk, saved in be.generate_live("musicgen", dict(zip(MUSICGEN_INPUTS, values)), progress):
            yield (chunk, gr.skip(), gr.skip(), gr.skip()) if saved is None else (None, *saved)

    def rvc(pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path, index_rate,
            filter_radius, resample_sr, rms_mix_rate, protect, progress=gr.Progress()):
        values = (pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path, index_rate,
                  filter_radius, resample_sr, rms_mix_rate, protect)
        return be.generate("rvc", dict(zip(RVC_INPUTS, values)), progress)

    def musicgen_models():
        return gr.Dropdown(choices=webui_models.musicgen_choices(be.root, be.host_models()))

    def rvc_models():
        return gr.Dropdown(choices=webui_models.rvc_voices(be.root, be.host_models()))

    def rvc_indexes():
        return gr.Dropdown(choices=webui_models.rvc_indexes(be.root, be.host_models()))

    def on_page_load():
        try:
            models = fwd.models()
        except HostDownError as exc:
            return (f"**Host down.** {exc}", gr.Dropdown(), gr.Dropdown(), gr.Dropdown())
        return (_table(models), gr.Dropdown(choices=webui_models.musicgen_choices(be.root, models)),
                gr.Dropdown(choices=webui_models.rvc_voices(be.root, models)),
                gr.Dropdown(choices=[("(none)", ""), *webui_models.rvc_indexes(be.root, models)]))

    live = live_playback()
    with gr.Blocks(title="modelhost") as app:
        gr.Markdown(f"## modelhost\nGeneration runs on the host at `{fwd.settings.address}`; models stay resident "
                    f"there. Results are saved under `{be.root / outputs.OUTPUTS}`."
                    + ("" if live else "\n\nInstall ffmpeg to hear MusicGen/AudioGen audio as it is generated."))
        with gr.Accordion("Models on the host", open=False):
            table = gr.Markdown()
        with gr.Tab("MusicGen + AudioGen"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    m_text = gr.Textbox(label="Prompt", lines=3, placeholder="lo-fi hip hop beat")
                    with gr.Row():
                        m_model = gr.Dropdown(label="Model", choices=list(webui_models.MUSICGEN_PICKER),
                                              value="facebook/musicgen-small", allow_custom_value=True,
                                              elem_id="musicgen-model", scale=4)
                        m_refresh = gr.Button("Refresh", size="sm", scale=1)
                        m_open = gr.Button("Folder", size="sm", scale=1)
                    m_melody = gr.Audio(label="Melody (optional, melody models)", type="numpy", sources=["upload"])
                    m_go = gr.Button("Generate", variant="primary", elem_id="musicgen-generate")
                with gr.Column():
                    m_gen = _generation_controls()
                    m_mbd = gr.Checkbox(label="Use Multi-Band Diffusion", value=False)
                    m_unload = gr.Button("Unload Model", variant="stop", size="sm")
            m_live = gr.Audio(label="Playing as it is generated", streaming=True, autoplay=True, interactive=False,
                              elem_id="musicgen-live", visible=live)
            m_out = _outputs("musicgen")
            m_api = gr.Button(visible=False)  # /musicgen, the whole result: what React and the WebUI's chain call
        with gr.Tab("RVC"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    with gr.Row():
                        r_model = gr.Dropdown(label="Voice", choices=[], allow_custom_value=True, elem_id="rvc-model", scale=4)
                        r_model_refresh = gr.Button("Refresh", size="sm", scale=1)
                        r_model_open = gr.Button("Folder", size="sm", scale=1)
                    with gr.Row():
                        r_index = gr.Dropdown(label="Index (empty: none)", choices=[("(none)", "")], value="",
                                              allow_custom_value=True, scale=4)
                        r_index_refresh = gr.Button("Refresh", size="sm", scale=1)
                        r_index_open = gr.Button("Folder", size="sm", scale=1)
                    r_key = gr.Textbox(label="Semitone shift", value="0")
                    r_method = gr.Radio(PITCH_METHODS, label="Pitch Collection Method", value="harvest")
                    r_index_rate = gr.Slider(0.0, 1.0, value=0.66, step=0.01, label="Search Feature Ratio")
                    r_filter = gr.Slider(0, 10, value=3, step=1, label="Filter Radius (pitch median filtering)")
                    r_resample = gr.Slider(0, 48000, value=0, step=1, label="Resample to (0: the voice's rate)")
                    r_rms = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Voice Envelope Normalization")
                    r_protect = gr.Slider(0.0, 0.5, value=0.33, step=0.01, label="Protect Breath Sounds")
                    r_unload = gr.Button("Unload Model", variant="stop", size="sm")
                    r_unload_alias = gr.Button(visible=False)  # React's route table calls /rvc_model_unload
                with gr.Column():
                    r_input = gr.Audio(label="Original Audio", type="filepath", sources=["upload"], elem_id="rvc-input")
                    r_go = gr.Button("Convert", variant="primary", elem_id="rvc-generate")
            r_out = _outputs("rvc")
        with gr.Tab("Host", elem_id="host-tab"):
            gr.Markdown("Each device's budget, and the models holding memory there (redrawn every 2 s).")
            memory = gr.HTML(elem_id="host-memory")
            with gr.Row():
                h_model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True, elem_id="host-model", scale=4)
                h_buttons = {action: gr.Button(action.capitalize(), size="sm", scale=1, elem_id=f"host-{action}")
                             for action in ("load", "unload", "pin", "unpin")}
            h_status = gr.Textbox(label="Last action", interactive=False, elem_id="host-status")

        answer = gr.Textbox(visible=False)  # what the folder and unload endpoints answer

        m_inputs = [m_text, m_melody, m_model, *m_gen, m_mbd]
        m_api.click(musicgen, m_inputs, m_out, api_name="musicgen")
        if live:
            m_go.click(musicgen_live, m_inputs, [m_live, *m_out], api_name="musicgen_live")
        else:
            m_go.click(musicgen, m_inputs, m_out, api_name=False)
        r_go.click(rvc, [r_key, r_input, r_index, r_method, r_model, r_index_rate, r_filter, r_resample, r_rms,
                         r_protect], r_out, api_name="rvc")
        m_refresh.click(musicgen_models, None, m_model, api_name="musicgen_audiogen_get_models")
        r_model_refresh.click(rvc_models, None, r_model, api_name="rvc_model_reload")
        r_index_refresh.click(rvc_indexes, None, r_index, api_name="rvc_index_reload")
        _answer(m_open, lambda: be.folder(webui_models.musicgen_dir(be.root)), answer, "musicgen_audiogen_open_model_dir")
        _answer(r_model_open, lambda: be.folder(webui_models.checkpoints_dir(be.root)), answer, "rvc_model_open")
        _answer(r_index_open, lambda: be.folder(webui_models.checkpoints_dir(be.root)), answer, "rvc_index_open")
        _answer(m_unload, lambda: be.unload("musicgen"), answer, "musicgen_audiogen_unload_model")
        _answer(r_unload, lambda: be.unload("rvc"), answer, "rvc_unload_model")
        _answer(r_unload_alias, lambda: be.unload("rvc"), answer, "rvc_model_unload")
        def host_view():
            try:
                models, devices = fwd.memory()
            except HostDownError as exc:
                return f"<p><b>Host down.</b> {exc}</p>", gr.Dropdown()
            return host_tab.memory_html(models, devices), gr.Dropdown(choices=[m["name"] for m in models])

        def host_action(action: str, name: str):
            if not name:
                raise gr.Error("pick a model first")
            try:
                line = fwd.manage(action, name)
            except HostDownError as exc:
                raise gr.Error(str(exc)) from None
            html_now, _ = host_view()
            return line, html_now

        for action, button in h_buttons.items():
            button.click(lambda name, a=action: host_action(a, name), h_model, [h_status, memory], api_name=f"host_{action}")
        gr.Timer(2.0).tick(lambda: host_view()[0], None, memory, api_name=False)  # the picker keeps its value
        app.load(host_view, None, [memory, h_model], api_name=False)
        favorite_in, favorite_go = gr.Textbox(visible=False), gr.Button(visible=False)
        favorite_go.click(be.favorite, favorite_in, answer, api_name="bark_favorite")  # React's Favorite button
        app.load(on_page_load, None, [table, m_model, r_model, r_index], api_name=False)
    return app


def launch(fwd: Forwarder, root: Path, port: int, listen: str = "127.0.0.1") -> None:
    """Serve the app until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build(fwd, root)
    app.queue(default_concurrency_limit=8)  # the host queues per model; the UI need not serialize
    app.launch(server_name=listen, server_port=port, show_error=True, inbrowser=False)


def live_playback() -> bool:
    """Whether the page can play audio as it is made: Gradio turns each streamed chunk into AAC
    through pydub, which runs ffprobe and ffmpeg."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _report(progress: gr.Progress) -> Callable[[int, int], None]:
    return lambda step, total: progress((step, total), desc="generating on the host", unit="steps")


def _answer(button: gr.Button, fn: Callable[[], str], out: gr.Textbox, api_name: str) -> None:
    button.click(fn, None, out, api_name=api_name)


def _generation_controls() -> list[gr.components.Component]:
    """duration, topk, topp, temperature, cfg_coef, seed: TTS-WebUI's controls and defaults (duration
    from React's 0.5 s; seed a Textbox, as in the WebUI)."""
    return [
        gr.Slider(0.5, 360, value=10, step=0.5, label="Duration (s)", elem_id="musicgen-duration"),
        gr.Number(label="Top-k", value=250, precision=0),
        gr.Slider(0.0, 1.5, value=0.0, step=0.01, label="Top-p"),
        gr.Slider(0.0, 1.5, value=1.0, step=0.01, label="Temperature"),
        gr.Slider(0.0, 10.0, value=3.0, step=0.1, label="Classifier Free Guidance"),
        gr.Textbox(label="Seed (-1: random)", value="-1"),
    ]


def _outputs(kind: str) -> list[gr.components.Component]:
    return [gr.Audio(label="Result", type="numpy", interactive=False, elem_id=f"{kind}-result"),
            gr.JSON(label="Metadata", visible=False), gr.Textbox(label="Saved in", interactive=False,
                                                                  elem_id=f"{kind}-folder")]


def _table(models: list[dict[str, Any]]) -> str:
    rows = ["| model | backend | state | device | memory |", "|---|---|---|---|---|"]
    for m in models:
        mib = (m.get("memory_bytes") or 0) / 2**20
        rows.append(f"| {m['name']} | {m['backend']} | {m['state']} | {m['device']} | {mib:.1f} MiB |")
    return "\n".join(rows)
