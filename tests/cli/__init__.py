"""
Tests of the C{disperse} command line that need no node.
"""
