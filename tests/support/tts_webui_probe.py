"""What a WebUI's ``tts_webui`` package does, observed from outside: a report to compare the stand-in with the real code.

Run with a WebUI environment's Python in a fresh WebUI folder holding ``tts_webui`` (the real package or
modelhost's stand-in, ``tests/support/tts_webui_standin``): ``python tts_webui_probe.py``. It exercises what the
WebUI-runner tests, the MMS extension and modelhost's WebUI runner and adapter rely on, through the package's
public functions only, and prints ``PROBE-REPORT {json}``: values that do not depend on the clock or on which
code ran (dates are masked), so the report of the stand-in must equal the real code's
(``tests/integration/test_webui_standin.py``). Covered: ``.env``/``.env.user`` loading and the default ``.env``;
``config.json`` written when missing and by ``set_config_value``; the decorator-extension loader (registration
files, ``decorator_*`` names, order, generators, disabled names, a package that fails to import); a generation
function under the WebUI's whole decorator chain called through ``dictionarize`` (what each decorator sees, the
result, the files written, the metadata), the same for a generator; ``set_seed``/``Seed``;
``manage_model_state``; ``log_function_time``'s wrapper; ``prompt_to_title``; the log lines; the
``torch.load`` patch; ``randomize_seed``; the Unload button's binding.
"""

import contextlib
import io
import json
import os
import random
import re
import sys
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the WebUI folder first, as `python server.py` there has it

REPORT: dict = {}
CALLS: list = []  # what the probe's decorator extensions saw, in order

OUTER = '''
def _recorder(name, generator):
    def decorate(fn):
        import probe_log
        probe_log.CALLS.append(["decorate", name, fn.__qualname__])
        if generator:
            def wrapper(*args, **kwargs):
                probe_log.CALLS.append(["call", name, sorted(kwargs), kwargs.get("seed"), kwargs.get("_type")])
                for item in fn(*args, **kwargs):
                    probe_log.CALLS.append(["item", name, None if item is None else sorted(item)])
                    yield item
        else:
            def wrapper(*args, **kwargs):
                probe_log.CALLS.append(["call", name, sorted(kwargs), kwargs.get("seed"), kwargs.get("_type")])
                result = fn(*args, **kwargs)
                probe_log.CALLS.append(["result", name, sorted(result)])
                return result
        return wrapper
    return decorate
'''


def _write_extensions() -> None:
    """Three decorator extensions registered in ``extensions.external.json``: an outer and an inner one with two plain
    decorators, a generator one and a disabled one each, and one whose package does not exist."""
    Path("probe_log.py").write_text("CALLS = []\n")
    for package, prefix in (("probe_outer", "o"), ("probe_inner", "i")):
        Path(package).mkdir()
        Path(package, "__init__.py").write_text("")
        Path(package, "main.py").write_text(OUTER + "".join(
            f"decorator_{prefix}{n} = _recorder('{prefix}{n}', False)\n" for n in (2, 1)) +
            f"decorator_{prefix}_generator = _recorder('{prefix}_gen', True)\n"
            f"decorator_{prefix}_disabled = _recorder('{prefix}_disabled', False)\n")
    entries = [{"package_name": p, "name": p, "extension_type": "decorator", "extension_class": c, "description": ""}
               for p, c in (("probe_outer", "outer"), ("probe_missing", "inner"), ("probe_inner", "inner"))]
    Path("extensions.external.json").write_text(json.dumps({"tabs": [], "tabsInGroups": {}, "decorators": entries}))


def _printed(fn, *args, **kwargs) -> tuple:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        value = fn(*args, **kwargs)
    return value, out.getvalue()


def probe_dotenv() -> None:
    from dotenv import dotenv_values

    import tts_webui.dotenv_manager.init as dotenv_init

    os.environ["PROBE_A"] = "preset"
    Path(".env").write_text("PROBE_A=env\nPROBE_B=env\nPROBE_C=env # a comment\n")
    Path(".env.user").write_text("PROBE_B=user\n")
    dotenv_init.init()
    REPORT["dotenv"] = {k: os.environ.get(k) for k in ("PROBE_A", "PROBE_B", "PROBE_C")}
    REPORT["dotenv_kept"] = Path(".env").read_text().startswith("PROBE_A=env\n")
    here = os.getcwd()
    Path("fresh").mkdir()
    os.chdir("fresh")
    os.environ["HF_HOME"] = "/probe/hf"
    try:
        dotenv_init.init()  # no .env here: the default one is written, then loaded
        REPORT["dotenv_default"] = dict(dotenv_values(".env"))
        REPORT["dotenv_default_applied"] = {k: os.environ.get(k) for k in ("weight_root", "index_root", "rmvpe_root")}
    finally:
        os.chdir(here)


def probe_config() -> None:
    import tts_webui.config.config as config_module
    from tts_webui.config.load_config import default_config

    REPORT["config_written"] = json.loads(Path("config.json").read_text())
    REPORT["config_is_default"] = config_module.config == default_config
    from tts_webui.config import config_utils

    REPORT["config_get"] = [config_utils.get_config_value("extensions", "disabled", "d"),
                            config_utils.get_config_value("nothing", "x", "d"),
                            config_utils.get_config_value("extensions", "x", "d")]
    config_utils.set_config_value("probe", "key", 1)
    REPORT["config_after_set"] = json.loads(Path("config.json").read_text())["probe"]
    config_module.config["extensions"]["disabled_decorators"] = ["decorator_o_disabled", "decorator_i_disabled"]


def probe_loader() -> None:
    import probe_log

    import tts_webui.extensions_loader.decorator_extensions as loader

    REPORT["loader_lists"] = {name: [f.__qualname__ for f in getattr(loader, name)] for name in
                              ("OUTER_WRAPPERS", "OUTER_WRAPPERS_GEN", "INNER_WRAPPERS", "INNER_WRAPPERS_GEN")}
    REPORT["loader_listed"] = [x["package_name"] for x in loader.extension_list_json]
    REPORT["loader_decorated"] = list(probe_log.CALLS)
    probe_log.CALLS.clear()


def probe_chain() -> None:
    import gradio as gr
    import probe_log
    import torch

    from tts_webui.decorators.decorator_add_base_filename import decorator_add_base_filename
    from tts_webui.decorators.decorator_add_date import decorator_add_date
    from tts_webui.decorators.decorator_add_model_type import decorator_add_model_type
    from tts_webui.decorators.decorator_apply_torch_seed import decorator_apply_torch_seed
    from tts_webui.decorators.decorator_log_generation import decorator_log_generation
    from tts_webui.decorators.decorator_save_metadata import decorator_save_metadata
    from tts_webui.decorators.decorator_save_wav import decorator_save_wav
    from tts_webui.decorators.gradio_dict_decorator import dictionarize
    from tts_webui.decorators.log_function_time import log_function_time
    from tts_webui.extensions_loader.decorator_extensions import decorator_extension_inner, decorator_extension_outer
    from tts_webui.utils.manage_model_state import manage_model_state

    @manage_model_state("probe")
    def get_model(model_name="probe-small"):
        return torch.nn.Linear(4, 4)

    @decorator_extension_outer
    @decorator_apply_torch_seed
    @decorator_save_metadata
    @decorator_save_wav
    @decorator_add_model_type("probe")
    @decorator_add_base_filename
    @decorator_add_date
    @decorator_log_generation
    @decorator_extension_inner
    @log_function_time
    def generate(text, model_name="probe-small", speed=1.0, **kwargs):
        get_model(model_name)
        return {"audio_out": (16000, torch.rand(6).numpy()), "seen": sorted(kwargs), "speed": speed}

    REPORT["decorated_by_extensions"] = list(probe_log.CALLS)
    probe_log.CALLS.clear()
    inputs = {gr.Textbox(): "text", gr.Textbox(): "model_name", gr.Slider(): "speed", gr.Textbox(): "seed"}
    audio = gr.Audio()
    outputs = {"audio_out": audio, "metadata": gr.JSON(), "folder_root": gr.Textbox()}
    call = dictionarize(fn=generate, inputs=inputs, outputs=outputs, api_name="probe")
    REPORT["dictionarize"] = {"keys": sorted(call), "signature": str(__import__("inspect").signature(call["fn"])),
                              "inputs": len(call["inputs"]), "outputs": len(call["outputs"]), "api_name": call["api_name"]}
    mapped, printed = _printed(call["fn"], "Hello, world: it's (me)!", "probe-small", 1.5, "7")
    rate, samples = mapped[audio]
    REPORT["chain_calls"] = list(probe_log.CALLS)
    REPORT["chain_audio"] = [rate, [round(float(x), 6) for x in samples], str(samples.dtype)]
    REPORT["chain_log"] = [_mask(line) for line in printed.splitlines()]
    folder = Path(mapped[outputs["folder_root"]])
    REPORT["chain_folder"] = _mask(str(folder))
    REPORT["chain_files"] = sorted(_mask(p.name) for p in folder.iterdir())
    metadata = mapped[outputs["metadata"]]
    REPORT["chain_metadata"] = {k: (_mask(v) if k == "date" else v) for k, v in metadata.items()}
    saved = json.loads(next(folder.glob("*.json")).read_text())
    REPORT["chain_metadata_file"] = {k: (_mask(v) if k == "date" else v) for k, v in saved.items()}
    probe_log.CALLS.clear()


def probe_generator_chain() -> None:
    import gradio as gr
    import probe_log
    import torch

    from tts_webui.decorators import (
        decorator_add_base_filename_generator,
        decorator_add_date_generator,
        decorator_add_model_type_generator,
        decorator_apply_torch_seed_generator,
        decorator_log_generation_generator,
        decorator_save_metadata_generator,
        decorator_save_wav_generator,
        dictionarize,
        log_generator_time,
    )
    from tts_webui.extensions_loader.decorator_extensions import (
        decorator_extension_inner_generator,
        decorator_extension_outer_generator,
    )

    @decorator_add_model_type_generator("probegen")
    @decorator_extension_outer_generator
    @decorator_apply_torch_seed_generator
    @decorator_save_metadata_generator
    @decorator_save_wav_generator
    @decorator_add_base_filename_generator
    @decorator_add_date_generator
    @decorator_log_generation_generator
    @decorator_extension_inner_generator
    @log_generator_time
    def stream(text, pieces=2, **kwargs):
        for n in range(int(pieces)):
            yield None  # skipped by every decorator of the chain
            yield {"audio_out": (8000, torch.rand(3).numpy()), "n": n}

    probe_log.CALLS.clear()
    audio = gr.Audio()
    call = dictionarize(fn=stream, inputs={gr.Textbox(): "text", gr.Number(): "pieces", gr.Textbox(): "seed"},
                        outputs={"audio_out": audio})
    items, printed = _printed(lambda: [out[audio] for out in call["fn"]("gen text", 2, "3")])
    REPORT["generator_items"] = [[rate, [round(float(x), 6) for x in samples]] for rate, samples in items]
    REPORT["generator_calls"] = list(probe_log.CALLS)
    REPORT["generator_log"] = [_mask(line) for line in printed.splitlines()]
    probe_log.CALLS.clear()


def probe_seed() -> None:
    import numpy as np
    import torch

    from tts_webui.utils.set_seed import set_seed
    from tts_webui.utils.timer_seed_contexts import Seed, Timer

    drawn = set_seed(0)
    REPORT["set_seed"] = [set_seed(5), set_seed(-1), type(drawn).__name__, 0 < drawn < 2**32, os.environ["PYTHONHASHSEED"] != ""]
    with Seed(11):
        inside = [torch.rand(2).tolist(), float(np.random.rand()), random.random(), torch.backends.cudnn.deterministic]
    after = torch.rand(2).tolist()  # Seed re-applies 11 when its block ends
    try:
        with Seed(3):
            torch.rand(1)
            raise KeyError("x")
    except KeyError:
        pass
    after_raise = torch.rand(1).tolist()  # not re-applied when the block raised: seed 3's stream goes on
    with Seed(-1):
        unseeded = torch.backends.cudnn.deterministic
    REPORT["seed"] = [inside, after, after_raise, unseeded]
    with Timer():
        pass


def probe_model_state() -> None:
    from tts_webui.utils import manage_model_state as mms

    loads = []

    @mms.manage_model_state("ns")
    def load(model_name="default", extra=None):
        loads.append([model_name, extra])
        return {"model": model_name}

    steps = []
    for args, kwargs in (((), {}), (("a",), {}), (("a",), {"extra": 1}), (("b", 2), {}), ((), {"model_name": "b"})):
        value, printed = _printed(load, *args, **kwargs)
        steps.append([value, printed])
    REPORT["model_state_loads"] = list(loads)
    REPORT["model_state_steps"] = steps
    REPORT["model_state_loaded"] = [mms.is_model_loaded("ns"), mms.get_current_model("ns"), mms.model_states["ns"].get_model_name()]
    REPORT["model_state_markdown"] = mms.list_loaded_models_as_markdown()
    REPORT["model_state_unload"] = [_printed(mms.unload_model, "ns")[1], _printed(mms.unload_model, "ns")[1],
                                    _printed(mms.unload_model, "ns", silent=True)[1]]
    load("c")
    REPORT["model_state_unload_all"] = _printed(mms.unload_all_models)[1]
    mms.rename_model("ns", "renamed")
    REPORT["model_state_end"] = [mms.model_states["ns"].get_model_name(), mms.is_model_loaded("ns"), sorted(mms.model_states)]
    from tts_webui.utils import list_dir_models

    REPORT["unload_button_binding"] = list_dir_models.unload_model is mms.unload_model


def probe_unload_button() -> None:
    import gradio as gr

    from tts_webui.utils.list_dir_models import unload_model_button

    with gr.Blocks() as demo:
        unload_model_button("probe")
    REPORT["unload_button_api"] = sorted(str(getattr(f, "api_name", None)) for f in demo.fns.values()
                                         if "unload" in str(getattr(f, "api_name", "")))


def probe_small() -> None:
    import numpy as np
    import torch

    from tts_webui.decorators.log_function_time import log_function_time, log_generator_time
    from tts_webui.utils.audio_array_to_sha256 import audio_array_to_sha256
    from tts_webui.utils.log_generation import middleware_log_generation
    from tts_webui.utils.prompt_to_title import prompt_to_title
    from tts_webui.utils.randomize_seed import randomize_seed
    from tts_webui.utils import torch_load_patch

    def original(text):
        return text

    for name, wrap in (("function", log_function_time), ("generator", log_generator_time)):
        wrapped = wrap(original)
        REPORT[f"log_{name}_time"] = [wrapped.__qualname__, getattr(wrapped, "__wrapped__", None) is None,
                                      [c.cell_contents is original for c in wrapped.__closure__]]
    REPORT["titles"] = [prompt_to_title(t) for t in ("Hello, world: it's (me)!", "a  b\\c/d?e\nf", "x" * 40, "",
                                                       "__ ___ (_)", 'say "hi".')]
    REPORT["log_lines"] = _printed(middleware_log_generation, {"text": "t" * 60, "_type": "mms", "outputs": {1: 2},
                                                               "seed": "7", "speed": 1.5, "opts": {"a": 1}})[1]
    REPORT["log_lines_no_text"] = _printed(middleware_log_generation, {"seed": 1})[1]
    REPORT["sha256"] = audio_array_to_sha256(np.arange(4, dtype=np.float32))
    REPORT["randomize_seed"] = [randomize_seed("5", False), type(randomize_seed("5", True)).__name__]
    path = Path("fraction.pt")
    torch.save(Fraction(1, 3), path)
    torch_load_patch.apply_torch_load_patch()
    loads = [str(torch.load(path)), torch.load.__name__]
    try:
        torch.load(path, weights_only=True)
        loads.append("weights_only=True loaded it")
    except Exception:
        loads.append("weights_only=True refused")
    torch_load_patch.restore_original_torch_load()
    loads.append(torch.load is torch_load_patch.original_torch_load)
    REPORT["torch_load_patch"] = loads


def _mask(text: str) -> str:
    """Dates and times as the WebUI prints them, masked: the report must not depend on the clock."""
    text = re.sub(r"\d{4}-\d\d-\d\d[_ ]\d\d[-:]\d\d[-:]\d\d(\.\d+)?", "<date>", text)
    return re.sub(r"\d+\.\d{3} seconds", "<s> seconds", text)


def main() -> None:
    _write_extensions()
    loader_out = io.StringIO()
    with contextlib.redirect_stdout(loader_out):
        probe_dotenv()
        probe_config()
        probe_loader()
    REPORT["loader_failed"] = [line for line in loader_out.getvalue().splitlines() if "Failed to load" in line]
    probe_chain()
    probe_generator_chain()
    probe_seed()
    probe_model_state()
    probe_unload_button()
    probe_small()
    print("PROBE-REPORT " + json.dumps(REPORT, default=repr), flush=True)


if __name__ == "__main__":
    main()
