"""The light UI: a Gradio app whose MusicGen, AudioGen and RVC tabs generate on the host.

It loads no model and imports no torch, so it starts in seconds, and any number of instances (on
4200, 4201, ...) share the host's resident models. Its Gradio API matches TTS-WebUI's: ``/musicgen``
(text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed,
use_multi_band_diffusion) and ``/rvc`` (pitch_up_key, original_audio_path, index_path,
pitch_collection_method, model_path, index_rate, filter_radius, resample_sr, rms_mix_rate, protect),
each returning (audio_out, metadata, folder_root), so TTS-WebUI's React UI works against it with
``GRADIO_BACKEND=http://127.0.0.1:4200/``. Model lists come from the host's ``ps``; progress bars
from the host's progress events. Handlers run in Gradio's worker threads.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from webui_adapter import convert, routing
from webui_adapter.forward import ForwardError, Forwarded, Forwarder, HostDownError

PITCH_METHODS = ["harvest", "pm", "crepe", "rmvpe"]


def build(fwd: Forwarder) -> gr.Blocks:
    """The app (not launched)."""

    def run(kind: str, kw: dict[str, Any], progress: gr.Progress) -> tuple[Any, dict[str, Any], str]:
        try:
            done = fwd.forward(kind, kw, progress=lambda step, total: progress((step, total), desc="generating on the host"))
        except (HostDownError, ForwardError) as exc:
            raise gr.Error(str(exc)) from None
        return done.output["audio_out"], _metadata(kind, kw, done), ""

    def musicgen(text, melody, model_name, duration, topk, topp, temperature, cfg_coef, seed,
                 use_multi_band_diffusion, progress=gr.Progress()):
        return run("musicgen", {"text": text, "melody": melody, "model_name": model_name, "duration": duration,
                                "topk": topk, "topp": topp, "temperature": temperature, "cfg_coef": cfg_coef,
                                "seed": seed, "use_multi_band_diffusion": use_multi_band_diffusion}, progress)

    def audiogen(text, model_name, duration, topk, topp, temperature, cfg_coef, seed, progress=gr.Progress()):
        return musicgen(text, None, model_name, duration, topk, topp, temperature, cfg_coef, seed, False, progress)

    def rvc(pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path, index_rate,
            filter_radius, resample_sr, rms_mix_rate, protect, progress=gr.Progress()):
        args = (pitch_up_key, original_audio_path, index_path, pitch_collection_method, model_path, index_rate,
                filter_radius, resample_sr, rms_mix_rate, protect)
        return run("rvc", convert.call_kwargs("rvc", args, {}), progress)

    def refresh():
        try:
            models = fwd.models()
        except HostDownError as exc:
            return (f"**Host down.** {exc}", *[gr.Dropdown() for _ in range(4)])
        music = [m["name"] for m in models if m.get("backend") == "musicgen"]
        sound = [m["name"] for m in models if m.get("backend") == "audiogen"]
        voices = routing.choices("rvc", models)
        return (_table(models), _dropdown(music), _dropdown(sound), _dropdown(voices),
                gr.Dropdown(choices=["", *_indexes(models)]))

    with gr.Blocks(title="modelhost") as app:
        gr.Markdown(f"## modelhost\nGeneration runs on the host at `{fwd.settings.address}`; models stay resident there.")
        with gr.Accordion("Models on the host", open=False):
            table = gr.Markdown()
            reload = gr.Button("Refresh", size="sm")
        with gr.Tab("MusicGen"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    m_text = gr.Textbox(label="Prompt", lines=3, placeholder="lo-fi hip hop beat")
                    m_model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True, elem_id="musicgen-model")
                    m_melody = gr.Audio(label="Melody (optional, melody models)", type="numpy", sources=["upload"])
                    m_go = gr.Button("Generate", variant="primary", elem_id="musicgen-generate")
                with gr.Column():
                    m_gen = _generation_controls()
                    m_mbd = gr.Checkbox(label="Use Multi-Band Diffusion", value=False)
            m_out = _outputs("musicgen")
        with gr.Tab("AudioGen"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    a_text = gr.Textbox(label="Prompt", lines=3, placeholder="dog barking in the rain")
                    a_model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True, elem_id="audiogen-model")
                    a_go = gr.Button("Generate", variant="primary", elem_id="audiogen-generate")
                with gr.Column():
                    a_gen = _generation_controls()
            a_out = _outputs("audiogen")
        with gr.Tab("RVC"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    r_model = gr.Dropdown(label="Voice", choices=[], allow_custom_value=True, elem_id="rvc-model")
                    r_index = gr.Dropdown(label="Index (the voice's own, from the host's catalog; empty: none)",
                                          choices=[""], value="", allow_custom_value=True)
                    r_key = gr.Textbox(label="Semitone shift", value="0")
                    r_method = gr.Radio(PITCH_METHODS, label="Pitch Collection Method", value="harvest")
                    r_index_rate = gr.Slider(0.0, 1.0, value=0.66, step=0.01, label="Search Feature Ratio")
                    r_filter = gr.Slider(0, 10, value=3, step=1, label="Filter Radius (pitch median filtering)")
                    r_resample = gr.Slider(0, 48000, value=0, step=1, label="Resample to (0: the voice's rate)")
                    r_rms = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Voice Envelope Normalization")
                    r_protect = gr.Slider(0.0, 0.5, value=0.33, step=0.01, label="Protect Breath Sounds")
                with gr.Column():
                    r_input = gr.Audio(label="Original Audio", type="filepath", sources=["upload"], elem_id="rvc-input")
                    r_go = gr.Button("Convert", variant="primary", elem_id="rvc-generate")
            r_out = _outputs("rvc")

        m_go.click(musicgen, [m_text, m_melody, m_model, *m_gen, m_mbd], m_out, api_name="musicgen")
        a_go.click(audiogen, [a_text, a_model, *a_gen], a_out, api_name="audiogen")
        r_go.click(rvc, [r_key, r_input, r_index, r_method, r_model, r_index_rate, r_filter, r_resample, r_rms,
                         r_protect], r_out, api_name="rvc")
        lists = [table, m_model, a_model, r_model, r_index]
        reload.click(refresh, None, lists, api_name="models")
        app.load(refresh, None, lists, api_name=False)
    return app


def launch(fwd: Forwarder, port: int, listen: str = "127.0.0.1") -> None:
    """Serve the app until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build(fwd)
    app.queue(default_concurrency_limit=8)  # the host queues per model; the UI need not serialize
    app.launch(server_name=listen, server_port=port, show_error=True, inbrowser=False)


def _generation_controls() -> list[gr.components.Component]:
    """duration, topk, topp, temperature, cfg_coef, seed: TTS-WebUI's controls and defaults."""
    return [
        gr.Slider(1, 360, value=10, step=0.5, label="Duration (s)"),
        gr.Number(label="Top-k", value=250, precision=0),
        gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Top-p"),
        gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Temperature"),
        gr.Slider(0.0, 10.0, value=3.0, step=0.1, label="Classifier Free Guidance"),
        gr.Number(label="Seed (-1: random)", value=-1, precision=0),
    ]


def _outputs(kind: str) -> list[gr.components.Component]:
    return [gr.Audio(label="Result", type="numpy", interactive=False, elem_id=f"{kind}-result"),
            gr.JSON(label="Metadata", visible=False), gr.Textbox(visible=False)]


def _metadata(kind: str, kw: dict[str, Any], done: Forwarded) -> dict[str, Any]:
    """What a WebUI records with a generation, plus what the host did."""
    shown = {k: v for k, v in kw.items() if k not in ("melody", "original_audio_path")}
    return {"_type": kind, **shown, "host_model": done.model, "host_params": done.params, **done.info,
            "timings_ms": {k.removesuffix("_ns"): round(v / 1e6, 2) for k, v in done.timings_ns.items()},
            "notes": done.notes}


def _indexes(models: list[dict[str, Any]]) -> list[str]:
    paths = [(m.get("source") or {}).get("index") for m in models if m.get("backend") == "rvc"]
    return sorted({os.path.splitext(os.path.basename(p))[0] for p in paths if p})


def _dropdown(names: list[str]) -> gr.Dropdown:
    return gr.Dropdown(choices=names, value=names[0] if names else None)


def _table(models: list[dict[str, Any]]) -> str:
    rows = ["| model | backend | state | device | memory |", "|---|---|---|---|---|"]
    for m in models:
        mib = (m.get("memory_bytes") or 0) / 2**20
        rows.append(f"| {m['name']} | {m['backend']} | {m['state']} | {m['device']} | {mib:.1f} MiB |")
    return "\n".join(rows)
