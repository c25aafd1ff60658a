"""
HTTP front ends: the public cache API and the service that serves it.
"""
