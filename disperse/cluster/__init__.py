"""
Distribution: how the members of a cluster share and keep the data.

  - L{disperse.cluster.members}: the metadata each member gossips, decoded
    once (L{disperse.cluster.members.NodeMeta}), and the member directory
    that membership keeps current;
  - L{disperse.cluster.placement}: which members own which partitions (pure:
    no I/O, no clock);
  - L{disperse.cluster.view}: this node's partition table, the tables before
    it, the settle window and the majority rule;
  - L{disperse.cluster.coordinator}: reads and writes at a consistency
    level, read repair, and the hints of L{disperse.cluster.hints};
  - L{disperse.cluster.replica}: what this node does as a replica for the
    others;
  - L{disperse.cluster.antientropy} and L{disperse.cluster.handoff}: Merkle
    comparison and repair between replicas, catching up after a change, and
    handing partitions off before leaving;
  - L{disperse.cluster.clients}: what those parts ask of the node-to-node
    client, and L{disperse.cluster.peer}: the node-to-node protocol itself.

The partition of a key and the Merkle tree of a partition belong to the
store (L{disperse.store}), which this package builds on. Everything here
that schedules takes its clock (and randomness) as arguments.
"""
