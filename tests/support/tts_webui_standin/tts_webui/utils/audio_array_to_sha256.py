"""Stand-in for ``tts_webui/utils/audio_array_to_sha256.py`` (TTS-WebUI 8c9046b): the SHA-256 of an array's bytes
(as the metadata's ``hash``). Nothing left out."""

import hashlib

import numpy as np


def audio_array_to_sha256(audio_array: np.ndarray) -> str:
    return hashlib.sha256(audio_array.tobytes()).hexdigest()
