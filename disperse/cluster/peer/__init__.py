"""
The node-to-node protocol: what nodes say to each other about the data they
hold, and how it travels. Gossip is not part of it (it speaks memberlist's
protocol on a port of its own, L{disperse.gossip}); this is the signed
HTTP/1.1 calls on the node-to-node port.

  - L{disperse.cluster.peer.messages}: the calls (apply, fetch, roots,
    digest, range), their msgpack encoding and strict decoders, and the path
    each is posted to;
  - L{disperse.cluster.peer.signatures}: request signatures with the cluster
    secret, and the replay cache that checks them;
  - L{disperse.cluster.peer.client}: the production peer client, signed and
    batched calls over persistent connections;
  - L{disperse.cluster.peer.server}: the node-to-node port's server, which
    checks each call's signature and hands it, by kind, to the local replica
    (L{disperse.cluster.peer.server.LocalReplica}, all it knows of the node).

Where each member's node-to-node port is comes from its gossip metadata,
which the member directory decodes
(L{disperse.cluster.members.MemberDirectory.peerAddress}).

Nothing here imports the node, its replica or coordinator, or the public API:
they use this package, not the other way round.
"""
