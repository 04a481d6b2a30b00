"""Forwards a WebUI's MusicGen, AudioGen and RVC calls to the modelhost host (built in a later issue)."""
