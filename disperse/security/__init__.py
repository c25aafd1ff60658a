"""
Who may do what, and how much: the limits of an HTTP port as configuration
(L{disperse.security.limits}), client tokens and their scopes, rate limits,
the TLS contexts of the node-to-node API, and the flags that set them
(L{disperse.security.options}). Pure logic, apart from reading files and
certificates when asked to. Enforcing them is the ports' business: the
public one in L{disperse.web}, the node-to-node one in
L{disperse.cluster.peer}.
"""
