"""
Pure distribution logic of the cluster: which members hold which keys
(L{disperse.cluster.placement}), and later the Merkle trees that replicas
compare to find what they missed. Pure: no I/O, no clock, no reactor.
"""
