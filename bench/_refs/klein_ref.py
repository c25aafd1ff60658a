"""
Reference server: a bare Klein app, one C{/cache/<key>} route for GET
(dictionary lookup, raw value or 404) and one for PUT (the same JSON body
Disperse takes, into the dictionary). Run as
C{python -m bench._refs.klein_ref --port N} from the repository root.
"""

from __future__ import annotations

import sys

from bench._refs._ref_common import MemoryCache, install_reactor, serve


def main() -> None:
    install_reactor()
    from klein import Klein
    from twisted.web.server import Request

    app = Klein()
    cache = MemoryCache()

    @app.route("/cache/<key>", methods=["GET"])
    def get_value(request: Request, key: str) -> bytes:
        value = cache.get(key)
        if value is None:
            request.setResponseCode(404)
            return b"Not Found"
        return value

    @app.route("/cache/<key>", methods=["PUT"])
    def put_value(request: Request, key: str) -> bytes:
        body = request.content.read() if request.content is not None else b""
        if not cache.put_json(key, body):
            request.setResponseCode(400)
            return b"Bad Request"
        return b"OK"

    serve("klein", app.resource(), sys.argv[1:])


if __name__ == "__main__":
    main()
