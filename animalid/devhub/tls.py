"""TLS for the hub: its own CA and a server certificate signed by it.

``STATE/ca.pem`` is the one file clients need to verify the hub; the CA key
and the server certificate and key live in ``STATE/tls/``. The server
certificate always covers ``localhost``, ``127.0.0.1`` and ``::1``, plus the
listen address and ``--hostname``; one that misses any of them, was signed by
another CA or expires within 30 days is issued anew on the next start.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import secrets
import ssl
from pathlib import Path
from typing import Optional

from .state import write_private, write_public

log = logging.getLogger(__name__)

CERT_DAYS = 825
CA_DAYS = 3650
# What every server certificate covers, whatever the hub listens on: the
# names clients use to reach a hub on this machine.
LOOPBACK_DNS = frozenset({"localhost"})
LOOPBACK_IPS = frozenset({"127.0.0.1", "::1"})


def tls_names(listen: str, hostname: Optional[str]) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) the server certificate must cover."""
    dns, ips = set(LOOPBACK_DNS), set(LOOPBACK_IPS)
    for name in (listen, hostname):
        if not name:
            continue
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name.lower())
    return dns, ips


def ensure_tls(state: Path, domain: str, listen: str, hostname: Optional[str]) -> None:
    """Create the CA once, and the server certificate whenever the old one no longer fits."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_file, ca_key_file = state / "ca.pem", state / "tls" / "ca.key"
    if ca_file.exists() and ca_key_file.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), None)
    else:
        ca_cert, ca_key = _make_ca(domain)
        write_private(ca_key_file, _key_pem(ca_key))
        write_public(ca_file, ca_cert.public_bytes(serialization.Encoding.PEM).decode())
        log.info("created CA %s", ca_file)

    dns, ips = tls_names(listen, hostname)
    cert_file, key_file = state / "tls" / "server.pem", state / "tls" / "server.key"
    if cert_file.exists() and key_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        if _cert_still_good(cert, ca_cert, dns, ips):
            return
    cert, key = _make_server_cert(ca_cert, ca_key, dns, ips)
    write_private(key_file, _key_pem(key))
    write_public(cert_file, cert.public_bytes(serialization.Encoding.PEM).decode())
    log.info("created server certificate for %s", ", ".join(sorted(dns) + sorted(ips)))


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(subject, issuer, key, signing_key, days: int, ca: bool, extensions=()):
    """A certificate for ``key``'s public half, signed with ``signing_key``:
    what the CA and the server certificate share. A CA signs certificates
    (and itself); a server certificate only signs its TLS handshakes.
    ``extensions`` are added after these, not critical."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                crl_sign=ca, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _make_ca(domain: str):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "animalid mailhub"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"mailhub test CA for {domain} ({secrets.token_hex(4)})"),
    ])
    return _issue(name, name, key, key, CA_DAYS, ca=True), key


def _make_server_cert(ca_cert, ca_key, dns: set[str], ips: set[str]):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(dns)]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = _issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_cert.subject,
        key, ca_key, CERT_DAYS, ca=False, extensions=[
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.SubjectAlternativeName(sans),
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        ],
    )
    return cert, key


def _cert_still_good(cert, ca_cert, dns: set[str], ips: set[str]) -> bool:
    """Reuse the certificate only if it still matches the CA, every name we
    listen on, and is not about to expire."""
    from cryptography import x509

    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:
        return False
    have_dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    return dns <= have_dns and ips <= have_ips and cert.not_valid_after_utc > soon


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx
