"""
The pure core of the Redis protocol (RESP) front end: the wire codec, the
command table and the typed arguments of the option-heavy commands.

Nothing here does I/O or imports the reactor or the node; the Twisted
adapter that serves it on C{--redis-port} comes next and calls into these
modules.
"""
