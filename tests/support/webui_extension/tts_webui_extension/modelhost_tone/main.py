"""A TTS-WebUI extension written as the WebUI's own are (Bark's and Tortoise's generator chains), for tests only.

``tone_stream`` is a generator under the WebUI's real decorators (its ``decorator_extension_inner_generator``
and the save/seed/model-type decorators of ``tts_webui.decorators``); its "model" (a small random torch
layer) is kept by the WebUI's ``manage_model_state("tone")``. It yields ``pieces`` items, each 0.1 s of
seeded noise through that layer, ``delay_s`` apart, so a test can watch the items stream and kill the
runner between them; a call closed before its last item appends ``<text> <items made>`` to ``CLOSED_LOG``. No real extension's generator builds tiny offline here (Bark's metadata needs its
models in the caller, Tortoise's and Chatterbox's architectures are fixed at hundreds of millions of
parameters). Runs in the WebUI's process or in a WebUI runner, whichever calls it.
"""

import time

import torch

from tts_webui.decorators import (
    decorator_add_base_filename_generator,
    decorator_add_date_generator,
    decorator_add_model_type_generator,
    decorator_apply_torch_seed_generator,
    decorator_log_generation_generator,
    decorator_save_wav_generator,
    log_generator_time,
)
from tts_webui.extensions_loader.decorator_extensions import (
    decorator_extension_inner_generator,
    decorator_extension_outer_generator,
)
from tts_webui.utils.manage_model_state import manage_model_state

SAMPLE_RATE = 16000
CLOSED_LOG = "tone-closed.log"  # in the working directory (the WebUI's folder): "<text> <items made>" per closed call


@manage_model_state("tone")
def get_model(model_name="tone-small"):
    layer = torch.nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(64) * 0.5)
        layer.bias.zero_()
    return layer


@decorator_add_model_type_generator("tone")
@decorator_extension_outer_generator
@decorator_apply_torch_seed_generator
@decorator_save_wav_generator
@decorator_add_base_filename_generator
@decorator_add_date_generator
@decorator_log_generation_generator
@decorator_extension_inner_generator
@log_generator_time
def tone_stream(text, model_name="tone-small", pieces=3, delay_s=0.0, **kwargs):
    model = get_model(model_name)
    made = 0
    try:
        for _ in range(int(pieces)):
            if delay_s:
                time.sleep(float(delay_s))
            with torch.no_grad():
                audio = model(torch.randn(SAMPLE_RATE // 10 // 64, 64)).reshape(-1)
            made += 1
            yield {"audio_out": (SAMPLE_RATE, audio.numpy()), "text": text}
    except GeneratorExit:  # closed before its last item: say where, for the test that cancels it
        with open(CLOSED_LOG, "a") as log:
            log.write(f"{text} {made}\n")
        raise
