"""Stand-in for ``tts_webui/decorators/decorator_save_wav.py`` (TTS-WebUI 8c9046b): writes ``result["audio_out"]``
(rate, samples) to ``<folder_root>/<filename>.wav`` with scipy, samples as they are (float32 audio makes a
float WAV); a generator's items are each saved, ``None`` items skipped. Left out: the
``_generator_accumulated`` variant."""

from scipy.io.wavfile import write as write_wav

from tts_webui.utils.outputs.path import get_relative_output_path_ext


def _save_wav(result):
    rate, samples = result["audio_out"]
    path = get_relative_output_path_ext(result, ".wav")
    print("Saving generation to", path)
    write_wav(path, rate, samples)


def decorator_save_wav(fn):
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        _save_wav(result)
        return result

    return wrapper


def decorator_save_wav_generator(fn):
    def wrapper(*args, **kwargs):
        for result in fn(*args, **kwargs):
            if result is not None:
                _save_wav(result)
                yield result

    return wrapper
