"""What the host serves: the catalog's fixed models, plus, with ``--webui``, every model a TTS-WebUI offers.

``Catalog.scan()`` lists the models known now; ``resolve(name)`` finds one by name, asking the WebUI
catalog (which re-reads the WebUI's folders) for a name the fixed catalog lacks, so a voice dropped
into the WebUI after start is served. Called only from the core thread.
"""

from __future__ import annotations

from modelhost.client.protocol.errors import UnknownModelError
from modelhost.host.backends import ModelSpec
from modelhost.host.webui_catalog import WebuiCatalog


class Catalog:
    """Fixed models first; a WebUI's models under their WebUI names for the rest."""

    def __init__(self, models: dict[str, ModelSpec], webui: WebuiCatalog | None = None) -> None:
        self._models = dict(models)
        self.webui = webui

    @property
    def dynamic(self) -> bool:
        """True where the served set can change while the host runs (a WebUI's folders)."""
        return self.webui is not None

    def scan(self) -> dict[str, ModelSpec]:
        found = dict(self.webui.scan()) if self.webui is not None else {}
        return {**found, **self._models}

    def resolve(self, name: str) -> ModelSpec:
        if name in self._models:
            return self._models[name]
        if self.webui is not None:
            return self.webui.resolve(name)
        known = ", ".join(sorted(self._models)) or "none"
        raise UnknownModelError(f"no model named {name!r} in the catalog; known models: {known}")
