"""One TTS-WebUI process, for tests: what the WebUI does before and around a tab's call, with the WebUI's own code.

Run with a WebUI environment's Python in the WebUI's folder (``tests/support/webui_runner_tree.run_webui``):
``python webui_process.py '<calls as JSON>'``. Like ``server.py`` it puts the WebUI folder first on the path,
loads ``.env``/``.env.user`` and applies the ``torch.load`` patch (its ``dotenv_manager.init`` and
``torch_load_patch``); importing an extension's module runs the WebUI's decorator-extension loader, which
reads ``extensions.external.json`` and applies the modelhost decorator; each call goes through the WebUI's
``dictionarize`` with Gradio components, as a tab's button does (keyword arguments, ``outputs``). Calls:

* ``{"call": "mms", "kwargs": {...}}``: the MMS tab's ``generate_audio_with_mms``;
* ``{"call": "seamless", "kwargs": {...}}`` and ``{"call": "seamless_audio", ...}``: the Seamless M4T tab's
  text-to-speech and audio-to-speech buttons (``seamless_translate``, ``seamless_translate_audio``);
* ``{"call": "kokoro", "kwargs": {...}}``: the Kokoro tab's ``tts_decorated`` (its own environment's Python);
* ``{"call": "tab", "fn": "module:function", "kwargs": {...}}``: any tab's decorated function, its inputs by name
  through ``dictionarize`` (the WebUI's call convention), its ``audio_out`` back (the README's by-hand check calls
  the audiocraft extension's MusicGen and MAGNeT tabs so; no CI environment has that extension);
* ``{"call": "tone", "kwargs": {...}, "stop_after": N}``: the test extension's generator, each item printed as it
  arrives; with ``stop_after``, closed after N items (what Gradio does to a cancelled event's generator);
* ``{"call": "load_here", "tab": MODULE, "loader": NAME, "args": [...]}``: the tab's own ``manage_model_state``
  loader called in this process, as the calls that stay in the WebUI do (Bark's, an OpenAI adapter's raw call);
* ``{"call": "unload", "namespace": "mms", "tab": MODULE}``: the tab's Unload button (``unload_model_button``'s
  call), after importing the tab's module as the WebUI does at start.

Prints ``WEBUI-REPORT {json}``: each call's audio (rate, samples) or error, and what this process loaded itself.
"""

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.getcwd())  # as `python server.py` in the WebUI folder has it

import tts_webui.dotenv_manager.init as dotenv_init  # noqa: E402
from tts_webui.utils.torch_load_patch import apply_torch_load_patch  # noqa: E402

dotenv_init.init()
apply_torch_load_patch()

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from tts_webui.decorators.gradio_dict_decorator import dictionarize  # noqa: E402


def mms(kwargs):
    from tts_webui_extension.mms.main import generate_audio_with_mms

    inputs = {gr.Textbox(): "text", gr.Dropdown(choices=["eng"], value="eng"): "language",
              gr.Slider(0.1, 10): "speaking_rate", gr.Slider(-2.5, 2.5): "noise_scale",
              gr.Slider(-1, 2): "noise_scale_duration", gr.Textbox(): "seed"}
    audio = gr.Audio()
    call = dictionarize(fn=generate_audio_with_mms, inputs=inputs,
                        outputs={"audio_out": audio, "metadata": gr.JSON(), "folder_root": gr.Textbox()})
    values = [kwargs.get(name, default) for name, default in
              (("text", "hello"), ("language", "eng"), ("speaking_rate", 1.0), ("noise_scale", 0.667),
               ("noise_scale_duration", 0.8), ("seed", "7"))]
    rate, samples = call["fn"](*values)[audio]
    return {"rate": int(rate), "samples": [float(x) for x in samples]}


def seamless(kwargs, audio_in=False):
    from tts_webui_extension.seamless_m4t.main import seamless_translate, seamless_translate_audio

    target = gr.Dropdown(choices=["Mandarin Chinese", "French"], value="Mandarin Chinese")
    if audio_in:  # the "Audio to Speech" tab: an uploaded clip as Gradio gives it, (rate, int16 samples)
        fn, inputs, names = seamless_translate_audio, {gr.Audio(type="numpy"): "audio", target: "tgt_lang_name"}, (
            ("audio", None), ("tgt_lang_name", "French"))
    else:
        fn, inputs, names = seamless_translate, {gr.Textbox(): "text", gr.Dropdown(choices=["English"]): "src_lang_name",
                                                 target: "tgt_lang_name", gr.Textbox(): "seed"}, (
            ("text", "hello"), ("src_lang_name", "English"), ("tgt_lang_name", "Mandarin Chinese"), ("seed", "3"))
    audio = gr.Audio()
    call = dictionarize(fn=fn, inputs=inputs, outputs={"audio_out": audio})
    values = [kwargs.get(name, default) for name, default in names]
    if audio_in:
        values[0] = (16000, np.asarray(values[0] or [0] * 1600, dtype=np.int16))
    rate, samples = call["fn"](*values)[audio]
    return {"rate": int(rate), "samples": [float(x) for x in samples]}


def kokoro(kwargs):
    from tts_webui_extension.kokoro.main import tts_decorated

    inputs = {gr.Textbox(): "text", gr.Dropdown(choices=["ef_dora"], value="ef_dora"): "voice", gr.Slider(0.5, 2): "speed",
              gr.Checkbox(): "use_gpu", gr.Dropdown(choices=["hexgrad/Kokoro-82M"]): "model_name", gr.Textbox(): "seed"}
    audio, tokens = gr.Audio(), gr.Textbox()
    call = dictionarize(fn=tts_decorated, inputs=inputs, outputs={"audio_out": audio, "tokens": tokens,
                                                                  "metadata": gr.JSON(), "folder_root": gr.Textbox()})
    values = [kwargs.get(name, default) for name, default in
              (("text", "hola mundo"), ("voice", "ef_dora"), ("speed", 1.0), ("use_gpu", False),
               ("model_name", "hexgrad/Kokoro-82M"), ("seed", "1"))]
    out = call["fn"](*values)
    rate, samples = out[audio]
    return {"rate": int(rate), "samples": [float(x) for x in samples], "tokens": out[tokens]}


def tab(call):
    import importlib

    module, _, name = call["fn"].partition(":")
    fn = getattr(importlib.import_module(module), name)
    kwargs = call.get("kwargs", {})
    inputs = {gr.Textbox(): key for key in kwargs}  # dictionarize maps each component's value to its name
    audio = gr.Audio()
    rate, samples = dictionarize(fn=fn, inputs=inputs, outputs={"audio_out": audio})["fn"](*kwargs.values())[audio]
    return {"rate": int(rate), "samples": [float(x) for x in np.asarray(samples).reshape(-1)]}


def tone(kwargs, stop_after=None):
    from tts_webui_extension.modelhost_tone.main import tone_stream

    inputs = {gr.Textbox(): "text", gr.Textbox(): "model_name", gr.Number(): "pieces", gr.Number(): "delay_s",
              gr.Textbox(): "seed"}
    audio = gr.Audio()
    call = dictionarize(fn=tone_stream, inputs=inputs, outputs={"audio_out": audio})
    start = time.monotonic()
    items = []
    values = [kwargs.get(name, default) for name, default in
              (("text", "hi"), ("model_name", "tone-small"), ("pieces", 3), ("delay_s", 0.0), ("seed", "5"))]
    stream = call["fn"](*values)
    for n, out in enumerate(stream):
        rate, samples = out[audio]
        items.append({"at_s": time.monotonic() - start, "rate": int(rate), "samples": [float(x) for x in samples]})
        print(f"ITEM {n}", flush=True)
        if stop_after is not None and len(items) >= stop_after:
            stream.close()
            break
    return {"items": items}


def load_here(call):
    import importlib

    module = importlib.import_module(call["tab"])  # the tab's module, decorated as the WebUI's start decorates it
    getattr(module, call["loader"])(*call.get("args", []))
    return {}


def unload(call):
    import importlib

    import tts_webui.utils.list_dir_models as buttons

    importlib.import_module(call["tab"])  # the WebUI builds every tab at start: the decorators are applied then

    buttons.unload_model(model_namespace=call["namespace"])  # what unload_model_button's click runs
    return {}


def main():
    report = {"calls": []}
    for call in json.loads(sys.argv[1]):
        try:
            out = {"mms": lambda: mms(call.get("kwargs", {})),
                   "seamless": lambda: seamless(call.get("kwargs", {})),
                   "kokoro": lambda: kokoro(call.get("kwargs", {})),
                   "tab": lambda: tab(call),
                   "seamless_audio": lambda: seamless(call.get("kwargs", {}), audio_in=True),
                   "tone": lambda: tone(call.get("kwargs", {}), call.get("stop_after")),
                   "unload": lambda: unload(call), "load_here": lambda: load_here(call)}[call["call"]]()
        except Exception as exc:
            traceback.print_exc()
            out = {"error": f"{type(exc).__module__}.{type(exc).__name__}: {exc}"}
        report["calls"].append(out)
    states = sys.modules.get("tts_webui.utils.manage_model_state")
    report["loaded_here"] = sorted(ns for ns, s in (states.model_states.items() if states else []) if s.get_model() is not None)
    report["model_code_here"] = sorted(m for m in ("transformers.models.vits.modeling_vits",
                                                            "transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2",
                                                            "kokoro.model") if m in sys.modules)
    report["adapter"] = "webui_adapter.main" in sys.modules
    print("WEBUI-REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
