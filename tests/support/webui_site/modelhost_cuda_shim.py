"""Test environments only: TTS-WebUI's Seamless M4T extension on a machine without CUDA.

``tts-webui-extension-seamless-m4t`` 0.0.7 loads its model with ``SeamlessM4Tv2Model.from_pretrained(...,
device_map="cuda:0")``: on a CPU-only torch that fails ("Torch not compiled with CUDA enabled"), so the
extension runs only where CUDA does. The WebUI's test environment (``.venv-webui/main``, set up by
``setup.sh --test``) imports this module at start through a ``.pth``; when transformers' SeamlessM4Tv2 modeling
module is first imported and torch has no CUDA, ``device_map`` values naming CUDA are dropped there, so the
model loads on the CPU as the extension's ``.to(device)`` then asks. Nothing is imported before that, and the
WebUI process and a WebUI runner get the same behaviour (their outputs are compared). Runs at import, in
whichever process imports the module.
"""

import importlib.abc
import sys

MODULE = "transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2"


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _cpu_device_map(module)

        spec.loader.exec_module = exec_module
        return spec


def _cpu_device_map(module):
    import torch

    if torch.cuda.is_available():
        return
    cls = module.SeamlessM4Tv2Model
    load = cls.from_pretrained.__func__

    def from_pretrained(klass, *args, **kwargs):
        if str(kwargs.get("device_map", "")).startswith("cuda"):
            del kwargs["device_map"]
        return load(klass, *args, **kwargs)

    cls.from_pretrained = classmethod(from_pretrained)


sys.meta_path.insert(0, _AfterImport())
