"""modelhost's host daemon: keeps models resident and serves them over ZeroMQ (see host.daemon)."""

__version__ = "0.1.0"
