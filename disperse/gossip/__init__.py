"""
Membership and failure detection: SWIM with the Lifeguard extensions, speaking
the wire protocol of HashiCorp memberlist.
"""
