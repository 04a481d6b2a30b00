"""Stand-in for ``tts_webui/decorators/__init__.py`` (TTS-WebUI 8c9046b): the decorators by name, as extensions
import them from the package. Left out: the ``_accumulated`` generator variants and
``decorator_save_musicgen_npz`` (MusicGen's, which the host serves natively), and ``dictionarize_wraps``."""

from .decorator_add_base_filename import (
    decorator_add_base_filename,
    decorator_add_base_filename_generator,
    format_date_for_file,
)
from .decorator_add_date import decorator_add_date, decorator_add_date_generator
from .decorator_add_model_type import decorator_add_model_type, decorator_add_model_type_generator
from .decorator_apply_torch_seed import decorator_apply_torch_seed, decorator_apply_torch_seed_generator
from .decorator_log_generation import decorator_log_generation, decorator_log_generation_generator
from .decorator_save_metadata import decorator_save_metadata, decorator_save_metadata_generator
from .decorator_save_wav import decorator_save_wav, decorator_save_wav_generator
from .gradio_dict_decorator import dictionarize
from .log_function_time import log_function_time, log_generator_time

__all__ = [
    "decorator_add_base_filename", "decorator_add_base_filename_generator", "format_date_for_file",
    "decorator_add_date", "decorator_add_date_generator", "decorator_add_model_type",
    "decorator_add_model_type_generator", "decorator_apply_torch_seed", "decorator_apply_torch_seed_generator",
    "decorator_log_generation", "decorator_log_generation_generator", "decorator_save_metadata",
    "decorator_save_metadata_generator", "decorator_save_wav", "decorator_save_wav_generator", "dictionarize",
    "log_function_time", "log_generator_time",
]
