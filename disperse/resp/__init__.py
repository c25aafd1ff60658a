"""
The Redis protocol (RESP) front end.

Its pure core (L{wire}, the codec; L{commands}, the table; L{arguments},
the option-heavy parsers; L{replies}, reply values) does no I/O and imports
neither the reactor nor the node. The command handlers, one module per
family, work on the node through L{context.Context}; the Twisted adapter
serving them on C{--redis-port} is L{server}.
"""
