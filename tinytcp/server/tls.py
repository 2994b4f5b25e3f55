"""Client certificates (mutual TLS) for the ``ssl:`` and ``tls:`` listeners.

An endpoint description cannot ask TLS clients for a certificate, so ``--client-ca`` does
it per connection, before the handshake: the server asks for a certificate and accepts only
one that chains to a CA in that file; ``--require-client-cert`` also refuses clients that
send none.  Verification runs against tinytcp's own store rather than the TLS context's,
because a ``tls:`` listener swaps in a context per server name (SNI) during the handshake.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="tinytcp")

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class ClientCertificates:
    """The CAs client certificates must chain to, and whether a client may present none."""

    def __init__(self, cafile: str, required: bool) -> None:
        from OpenSSL import SSL, crypto

        with open(cafile, "rb") as f:
            pems = _PEM_CERT.findall(f.read())
        if not pems:
            raise ValueError(f"no PEM certificate in {cafile}")
        self._cas = [crypto.load_certificate(crypto.FILETYPE_PEM, pem) for pem in pems]
        self.required = required
        self._mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if required else 0)

    def ask(self, transport: Any) -> None:
        """Ask this TLS connection's client for a certificate; call before the handshake."""
        transport.getHandle().set_verify(self._mode, self._verify)

    def log_peer(self, transport: Any, peer: str) -> None:
        """Log whose certificate a client presented (the handshake verified it), for audits."""
        certificate = transport.getPeerCertificate()
        if certificate is not None:
            log.info("{peer}: TLS client certificate {subject}", peer=peer, subject=subject(certificate))

    def _verify(self, connection: Any, certificate: Any, error: int, depth: int, ok: int) -> bool:
        """OpenSSL's verdict on each certificate is replaced by one check of the whole chain.

        OpenSSL calls this from the top of the chain down to the client's own certificate
        (depth 0), so the decision is taken there, against ``--client-ca`` alone.
        """
        if depth > 0:
            return True
        from OpenSSL import crypto

        store = crypto.X509Store()
        for ca in self._cas:
            store.add_cert(ca)
        chain = (connection.get_peer_cert_chain() or [])[1:]
        try:
            crypto.X509StoreContext(store, certificate, chain).verify_certificate()
        except crypto.X509StoreContextError as problem:
            log.info("TLS client certificate {subject} refused: {why}", subject=subject(certificate), why=problem)
            return False
        return True


def subject(certificate: Any) -> str:
    """A certificate's subject in the usual ``CN=...`` form, for the logs."""
    return certificate.to_cryptography().subject.rfc4514_string()
