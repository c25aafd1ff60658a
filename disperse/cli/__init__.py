"""
The C{disperse} command-line client: plain synchronous HTTP to one node's
API (no reactor), argparse commands, human output or C{--json}.
"""
