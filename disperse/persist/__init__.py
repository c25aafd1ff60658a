"""
Durability: a node's store kept in a data directory (C{--data-dir}).

The pure core is the framing of the files (L{disperse.persist.format});
around it, the append-only log with its group commit and syncs
(L{disperse.persist.log}), snapshots taken in slices
(L{disperse.persist.snapshot}), loading at start-up
(L{disperse.persist.recovery}), the directory itself with its identity and
lock (L{disperse.persist.datadir}), the offline checker
(L{disperse.persist.verify}), and the service a node runs them in
(L{disperse.persist.service}).
"""
