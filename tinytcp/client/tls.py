"""TLS for the client: which certificates to trust, whose name to check, which to present.

Verification is on by default, against the system's trust store or ``cafile``, and checks
that the server's certificate names ``server_name`` (a DNS name or an IP address); turning
it off takes an explicit ``verify=False``.  A failed handshake is reported by
:func:`tls_problem` as one sentence, so the command line never shows a traceback.

TLS needs ``pip install 'tinytcp[tls]'`` (pyOpenSSL and service_identity); this module
imports them only when TLS is asked for, so the library works without them.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet import ssl

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TLSConfigError(ValueError):
    """A TLS setting cannot be used (a file is missing or holds no certificate or key)."""


@dataclass(frozen=True)
class TLSSettings:
    """How the client speaks TLS.

    ``server_name`` is the name the server's certificate must carry (and the SNI sent);
    ``cafile`` a PEM file of certificates to trust instead of the system's store; ``cert``
    and ``key`` a client certificate for servers that ask for one (``key`` defaults to
    ``cert``, for a PEM holding both); ``verify=False`` accepts any certificate.
    """

    server_name: str | None = None
    cafile: str | None = None
    verify: bool = True
    cert: str | None = None
    key: str | None = None

    def creator(self) -> IOpenSSLClientConnectionCreator:
        """The connection creator for ``wrapClientTLS``; raises TLSConfigError for bad files."""
        try:
            from twisted.internet import ssl
        except ImportError:
            raise TLSConfigError("TLS needs pyOpenSSL: pip install 'tinytcp[tls]'") from None

        client_certificate = _client_certificate(self.cert, self.key) if self.cert else None
        if not self.verify:
            return _Unverified(self.server_name, client_certificate)
        if not self.server_name:
            raise TLSConfigError("verifying the server's certificate needs a server name")
        trust = _trust_root(self.cafile) if self.cafile else ssl.platformTrust()
        return ssl.optionsForClientTLS(self.server_name, trustRoot=trust, clientCertificate=client_certificate)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as problem:
        raise TLSConfigError(f"cannot read {what} {path}: {problem.strerror}") from None


def _trust_root(cafile: str) -> Any:
    from twisted.internet import ssl

    pems = _PEM_CERT.findall(_read(cafile, "CA file"))
    if not pems:
        raise TLSConfigError(f"no PEM certificate in CA file {cafile}")
    try:
        return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(pem) for pem in pems])
    except Exception as problem:
        raise TLSConfigError(f"bad certificate in CA file {cafile}: {problem}") from None


def _client_certificate(cert: str, key: str | None) -> ssl.PrivateCertificate:
    from twisted.internet import ssl

    cert_pem = _read(cert, "certificate")
    key_pem = cert_pem if key is None else _read(key, "key")
    try:
        return ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    except Exception:
        raise TLSConfigError(
            f"no usable certificate and private key in {cert}{'' if key is None else ' and ' + key}"
        ) from None


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """Accepts any server certificate: for --insecure-skip-verify only."""

    def __init__(self, server_name: str | None, client_certificate: ssl.PrivateCertificate | None) -> None:
        from twisted.internet import ssl

        options: dict[str, Any] = {"verify": False}
        if client_certificate is not None:
            options["privateKey"] = client_certificate.privateKey.original
            options["certificate"] = client_certificate.original
        self._context = ssl.CertificateOptions(**options).getContext()
        self._name = server_name.encode("idna") if server_name and not _is_ip(server_name) else None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL import SSL

        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if self._name is not None:
            connection.set_tlsext_host_name(self._name)
        return connection


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _identity(pattern: Any) -> str:
    """The name or address service_identity looked for and did not find in the certificate."""
    for attribute in ("hostname", "ip", "uri", "pattern"):
        value = getattr(pattern, attribute, None)
        if value is not None:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return str(pattern)


#: OpenSSL's reasons, as they appear in its error strings, in words a user can act on
_REASONS = (
    ("certificate verify failed", "the server's certificate is not trusted (certificate verify failed; see --cafile)"),
    ("certificate required", "the server requires a client certificate (see --cert)"),
    ("unknown ca", "the server does not trust the client certificate (tlsv1 alert unknown ca)"),
    ("bad certificate", "the server rejected the client certificate (bad certificate)"),
    ("wrong version number", "the server did not answer in TLS (is the port a plain TCP listener?)"),
    ("packet length too long", "the server did not answer in TLS (is the port a plain TCP listener?)"),
    ("record layer failure", "the server did not answer in TLS (is the port a plain TCP listener?)"),
)


def tls_problem(reason: Failure | None) -> str | None:
    """One sentence for a connection lost to TLS (handshake, certificate); None for other reasons."""
    if reason is None or "OpenSSL" not in sys.modules:
        return None  # no TLS connection was made in this process: nothing to import for the answer
    try:
        from OpenSSL import SSL
        from service_identity import VerificationError
    except ImportError:
        return None
    if reason.check(VerificationError):
        wanted = sorted({_identity(error.mismatched_id) for error in getattr(reason.value, "errors", ())})
        return f"TLS: the server's certificate is not for {' or '.join(wanted) or 'that name'} (see --server-name)"
    if reason.check(SSL.Error):
        text = str(reason.value).lower()
        for needle, sentence in _REASONS:
            if needle in text:
                return f"TLS: {sentence}"
        return f"TLS handshake failed: {reason.value}"
    return None
