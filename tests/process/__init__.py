"""
Tests that start real C{twistd disperse} processes on loopback (through
L{disperse.testing.cluster}) and talk to them over sockets: slower than
the in-memory tests beside them, and the proof that the wiring works.
"""
