"""
Reference server: a bare C{twisted.web} resource tree, C{/cache/<key>} with
C{render_GET} (dictionary lookup, raw value or 404) and C{render_PUT} (the
same JSON body Disperse takes). Run as
C{python -m bench._refs.web_ref --port N} from the repository root.
"""

from __future__ import annotations

import sys

from bench._refs._ref_common import MemoryCache, install_reactor, serve


def main() -> None:
    install_reactor()
    from twisted.web.resource import Resource
    from twisted.web.server import Request

    cache = MemoryCache()

    class CacheKeys(Resource):
        """
        C{/cache/<key>}: a leaf, so the key is the single path segment left.
        """

        isLeaf = True

        def _key(self, request: Request) -> str | None:
            rest = request.postpath or []
            if len(rest) != 1 or not rest[0]:
                return None
            return rest[0].decode("utf-8", "replace")

        def render_GET(self, request: Request) -> bytes:
            key = self._key(request)
            value = None if key is None else cache.get(key)
            if value is None:
                request.setResponseCode(404)
                return b"Not Found"
            return value

        def render_PUT(self, request: Request) -> bytes:
            key = self._key(request)
            body = request.content.read() if request.content is not None else b""
            if key is None or not cache.put_json(key, body):
                request.setResponseCode(400)
                return b"Bad Request"
            return b"OK"

    root = Resource()
    root.putChild(b"cache", CacheKeys())
    serve("twisted.web", root, sys.argv[1:])


if __name__ == "__main__":
    main()
