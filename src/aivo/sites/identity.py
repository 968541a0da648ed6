"""Site identity: the EC key pair a site enrolls with, and TLS certificates for the coordinator.

One key pair per site (NIST P-384, OpenSSH encoding: what Flower's SuperNode authentication
loads). The same key serves twice:

* Flower: the SuperLink runs with `--enable-supernode-auth` and knows the public keys of the
  enrolled sites (`flwr supernode register`); a SuperNode whose key is not registered cannot
  connect.
* AIVO: at the start of every round each site signs the coordinator's fresh nonce (with its
  node id and site name) and the coordinator verifies the signature against the public key it
  enrolled for that site name. A node that is not an enrolled site, or that claims another
  site's name, takes no part. This holds in the simulation runtime too, and it does not
  depend on who can reach the SuperLink's control API.

Everything cryptographic is `cryptography`'s (ECDSA with SHA-384, X.509); nothing is hand-made.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aivo.errors import ConfigError, DataError

CURVE = ec.SECP384R1()


def challenge(*, nonce: str, node_id: int, site: str) -> bytes:
    """The bytes a site signs for one round."""
    return f"aivo-federation-status\n{nonce}\n{int(node_id)}\n{site}".encode()


def generate_key_pair(private_path: Path, public_path: Path) -> str:
    """Write a new P-384 key pair (private key mode 0600); returns the public key (OpenSSH)."""
    if private_path.exists():
        raise ConfigError(f"{private_path} exists already; refusing to overwrite a site key")
    key = ec.generate_private_key(CURVE)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    public_path.write_bytes(public + b"\n")
    return public.decode()


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the site key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an elliptic-curve key (a site key is NIST P-384)")
    return key


def parse_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """An OpenSSH public key line (`ecdsa-sha2-nistp384 AAAA... [comment]`); DataError if not."""
    try:
        key = serialization.load_ssh_public_key(text.strip().encode())
    except (ValueError, UnicodeError, UnsupportedAlgorithm) as exc:
        raise DataError(f"not an OpenSSH public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise DataError("a site key must be an elliptic-curve (NIST P-384) public key")
    return key


def sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> str:
    return key.sign(message, ec.ECDSA(hashes.SHA384())).hex()


def verify(public_key_text: str, message: bytes, signature_hex: str) -> bool:
    try:
        parse_public_key(public_key_text).verify(bytes.fromhex(signature_hex), message, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError, DataError):
        return False
    return True


def fingerprint(public_key_text: str) -> str:
    """SHA-256 of the key's DER encoding, hex (to show and compare keys)."""
    der = parse_public_key(public_key_text).public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


# --- TLS ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificatePaths:
    ca_certificate: Path
    server_certificate: Path
    server_key: Path


def make_certificates(directory: Path, *, hosts: list[str], days: int = 365) -> CertificatePaths:
    """A private CA and a server certificate for the coordinator, valid for `hosts` (DNS names
    or IP addresses). Sites need only `ca.crt`. For production, certificates from your own PKI
    work the same way."""
    if not hosts:
        raise ConfigError("the coordinator's certificate needs at least one host name or IP address")
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths(directory / "ca.crt", directory / "server.pem", directory / "server.key")
    if any(p.exists() for p in (paths.ca_certificate, paths.server_certificate, paths.server_key)):
        raise ConfigError(f"certificates exist in {directory} already; remove them to make new ones")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(CURVE)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AIVO federation CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA384()))
    server_key = ec.generate_private_key(CURVE)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA384()))
    paths.ca_certificate.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.server_certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    fd = os.open(paths.server_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    return paths
