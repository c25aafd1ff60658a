"""
Tests of the HTTP front: the public API, its routes, guard, limits,
metrics pages, dashboard and service, in memory.
"""
