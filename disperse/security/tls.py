"""
Mutual TLS between nodes: every node holds a certificate signed by the
cluster's own CA, serves the node-to-node API only to clients presenting
such a certificate, and calls other nodes only if they present one.

Trust is membership of the cluster CA, not a host name: node certificates
need no names matching their addresses (nodes are found by gossip, by
address). The cluster CA must be private to the cluster.

The node-to-node API then listens on a port of its own, whose address
each node adds to the metadata it gossips (C{peer_addr},
L{disperse.cluster.members.NodeMeta}); the public API
keeps its own port, certificate (public TLS is C{--http-port ssl:...}) and
clients without certificates.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from OpenSSL import SSL, crypto
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
)


class TLSConfigError(ValueError):
    """
    The certificates cannot be used; the message says which and why.
    """


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"{what}: cannot read {path}: {e}") from None


def _options(ca: Certificate, node: PrivateCertificate) -> CertificateOptions:
    # Both sides verify the other against the cluster CA only, and both
    # require a certificate: a connection without one fails its handshake.
    # pyOpenSSL takes cryptography's key and certificate (its own are
    # deprecated there); the CA store still wants its own.
    return CertificateOptions(
        privateKey=node.privateKey.original.to_cryptography_key(),
        certificate=node.original.to_cryptography(),
        verify=True,
        caCerts=[ca.original],
        requireCertificate=True,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


@dataclass(frozen=True)
class ClusterTLS:
    """
    The TLS settings of one node's node-to-node traffic.

    @ivar options: for both ends: the port serving the node-to-node API,
        and the connections calling other nodes.
    """

    options: CertificateOptions


def loadClusterTLS(caPath: str, certPath: str, keyPath: str | None) -> ClusterTLS:
    """
    Load the cluster CA and this node's certificate and key (from
    C{certPath} when C{keyPath} is C{None}).

    @raise TLSConfigError: if any is missing, unreadable, or not a
        certificate signed by the CA.
    """
    caPEM = _read(caPath, "--cluster-ca")
    try:
        ca = Certificate.loadPEM(caPEM)
    except (SSL.Error, crypto.Error, ValueError) as e:
        raise TLSConfigError(f"--cluster-ca: not a PEM certificate ({e})") from None
    certPEM = _read(certPath, "--node-cert")
    keyPEM = _read(keyPath, "--node-key") if keyPath else certPEM
    try:
        node = PrivateCertificate.fromCertificateAndKeyPair(
            Certificate.loadPEM(certPEM), KeyPair.load(keyPEM, crypto.FILETYPE_PEM)
        )
    except (SSL.Error, crypto.Error, ValueError) as e:
        raise TLSConfigError(
            f"--node-cert/--node-key: not a PEM certificate and key ({e})"
        ) from None
    try:
        options = _options(ca, node)
        options.getContext()
    except (SSL.Error, crypto.Error, ValueError) as e:
        raise TLSConfigError(
            f"the node certificate and key do not match ({e})"
        ) from None
    if not _signedBy(node, ca):
        raise TLSConfigError("--node-cert is not signed by --cluster-ca")
    return ClusterTLS(options)


def _signedBy(node: PrivateCertificate, ca: Certificate) -> bool:
    # A node with a certificate from elsewhere would only fail every
    # handshake later; say so at start-up instead.
    try:
        node.original.to_cryptography().verify_directly_issued_by(
            ca.original.to_cryptography()
        )
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
