"""The protocol both sides speak, imported by the client API (``modelhost.client``) and by the host alike:
``wire`` (message kinds and the msgpack framing, THE wire format), ``shm`` (shared-memory segments),
``errors`` (error codes and the exception tree), ``address`` (addresses, the default socket and token),
``security`` (CURVE key files and a client's keys). Torch-free and light: pyzmq, msgpack and numpy only.
Nothing here runs a thread of its own.
"""
