"""Certificates the TLS tests make for themselves: a test CA, server and client certificates.

Generated with ``cryptography`` (which ``twisted[tls]`` brings) into a temporary folder, so
no test depends on a certificate shipped with some package or on the system trust store.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_Key = ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: _Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: str,
    issuer: x509.Certificate | None,
    issuer_key: _Key | None,
    *,
    ca: bool,
    names: tuple[str, ...] = (),
    client: bool = False,
) -> tuple[x509.Certificate, _Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        alternatives: list[x509.GeneralName] = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    cert = builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())
    return cert, key


@dataclass
class PKI:
    """Paths of PEM files in ``folder``; ``server.pem`` and ``client.pem`` hold key and certificate."""

    folder: str
    ca: str  # the CA certificate that signed server.pem and client.pem
    server: str  # key + certificate for localhost and 127.0.0.1
    server_cert: str  # certificate only
    server_key: str  # key only
    client: str  # key + certificate of a client (CN "client-ann"), for mutual TLS
    other_ca: str  # a CA that signed nothing the server or client uses
    stranger: str  # key + certificate of a client signed by other_ca


def make_pki(folder: str | None = None) -> PKI:
    """A CA, a server certificate for localhost/127.0.0.1/::1, and client certificates."""
    folder = folder or tempfile.mkdtemp(prefix="tinytcp-pki-")

    def write(name: str, *parts: bytes) -> str:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(b"".join(parts))
        return path

    ca, ca_key = _issue("tinytcp test CA", None, None, ca=True)
    server, server_key = _issue("localhost", ca, ca_key, ca=False, names=("localhost", "127.0.0.1", "::1"))
    client, client_key = _issue("client-ann", ca, ca_key, ca=False, client=True)
    other, other_key = _issue("some other CA", None, None, ca=True)
    stranger, stranger_key = _issue("stranger", other, other_key, ca=False, client=True)
    return PKI(
        folder=folder,
        ca=write("ca.crt", _pem_cert(ca)),
        server=write("server.pem", _pem_key(server_key), _pem_cert(server)),
        server_cert=write("server.crt", _pem_cert(server)),
        server_key=write("server.key", _pem_key(server_key)),
        client=write("client.pem", _pem_key(client_key), _pem_cert(client)),
        other_ca=write("other-ca.crt", _pem_cert(other)),
        stranger=write("stranger.pem", _pem_key(stranger_key), _pem_cert(stranger)),
    )
