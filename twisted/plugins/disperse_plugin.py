from twisted.application.service import ServiceMaker

disperse = ServiceMaker(
    "Disperse",
    "disperse.tap",
    "A distributed cache node (gossip + HTTP API).",
    "disperse",
)
