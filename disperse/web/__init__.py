"""
The public HTTP port: its route table (L{disperse.web.routes}), the front
resource and Klein app of the API (L{disperse.web.api}), the request guard
(L{disperse.web.auth}), the connection limits (L{disperse.web.limits}), the
site and service that serve it (L{disperse.web.service}), request metrics
and the C{/metrics} page (L{disperse.web.metrics}), and the dashboard
(L{disperse.web.dashboard}). The node-to-node port is not here: it is
L{disperse.cluster.peer}.
"""
