"""
The fault bed: a cluster of real nodes on one machine, each in its own
network namespace, put through scheduled faults while clients record a
history, then checked and reported on.

Pure parts (scenarios and their schedules, the verdict, the report text,
the delay line of the relay) import nothing that touches the machine; the
rest (namespaces, processes, firewall rules, the workload's HTTP clients)
is glue driven from L{disperse.testbed.runner}. C{python -m disperse.testbed}
is the command line.
"""
