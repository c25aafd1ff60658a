"""
Who may do what, and how much: client tokens and their scopes, rate
limits, and the TLS contexts of the node-to-node API. Pure logic, apart
from reading files and certificates when asked to.
"""
