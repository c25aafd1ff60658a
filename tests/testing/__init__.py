"""
Tests of the fakes and checkers that L{disperse.testing} ships.
"""
