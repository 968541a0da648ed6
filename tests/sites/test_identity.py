"""Site keys (what Flower's SuperNode authentication loads), signatures, TLS certificates, enrollment."""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from aivo.errors import ConfigError, ConflictError, DataError, NotFoundError
from aivo.registry.sites import enroll_site, enrolled_keys, list_sites, revoke_site
from aivo.sites.identity import (
    challenge,
    fingerprint,
    generate_key_pair,
    load_private_key,
    make_certificates,
    parse_public_key,
    sign,
    verify,
)


def test_key_pair_signs_and_only_its_public_key_verifies(tmp_path):
    public = generate_key_pair(tmp_path / "a.key", tmp_path / "a.pub")
    other = generate_key_pair(tmp_path / "b.key", tmp_path / "b.pub")
    assert public.startswith("ecdsa-sha2-nistp384 ")
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    load_ssh_private_key((tmp_path / "a.key").read_bytes(), None)  # what flower-supernode loads
    key = load_private_key(tmp_path / "a.key")
    message = challenge(nonce="n1", node_id=7, site="school-a")
    signature = sign(key, message)
    assert verify(public, message, signature)
    assert not verify(other, message, signature)
    assert not verify(public, challenge(nonce="n2", node_id=7, site="school-a"), signature)  # a replayed nonce
    assert not verify(public, challenge(nonce="n1", node_id=7, site="school-b"), signature)  # another site's name
    assert not verify(public, message, "zz")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_key_pair(tmp_path / "a.key", tmp_path / "a.pub")
    with pytest.raises(DataError, match="OpenSSH"):
        parse_public_key("ssh-rsa garbage")
    assert fingerprint(public) != fingerprint(other)


def test_certificates_verify_for_their_hosts(tmp_path):
    paths = make_certificates(tmp_path / "certs", hosts=["127.0.0.1", "coordinator.example"])
    cert = x509.load_pem_x509_certificate(paths.server_certificate.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "coordinator.example" in names.get_values_for_type(x509.DNSName)
    context = ssl.create_default_context(cafile=str(paths.ca_certificate))
    context.load_cert_chain  # the CA loads as a trust anchor
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(paths.server_certificate), str(paths.server_key))
    assert paths.server_key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="exist"):
        make_certificates(tmp_path / "certs", hosts=["127.0.0.1"])


def test_enrollment_rules(registry, clock, tmp_path):
    key_a = generate_key_pair(tmp_path / "a.key", tmp_path / "a.pub")
    key_b = generate_key_pair(tmp_path / "b.key", tmp_path / "b.pub")
    with registry.session() as session:
        enroll_site(session=session, name="school-a", public_key=key_a, fingerprint=fingerprint(key_a), actor="t",
                    clock=clock)
        again = enroll_site(session=session, name="school-a", public_key=key_a, fingerprint=fingerprint(key_a),
                            actor="t", clock=clock)
        assert again.status == "enrolled"
    with registry.session() as session, pytest.raises(ConflictError, match="another key"):
        enroll_site(session=session, name="school-a", public_key=key_b, fingerprint=fingerprint(key_b), actor="t",
                    clock=clock)
    with registry.session() as session, pytest.raises(DataError, match="site name"):
        enroll_site(session=session, name="bad name!", public_key=key_b, fingerprint=fingerprint(key_b), actor="t")
    with registry.session() as session:
        revoke_site(session=session, name="school-a", clock=clock)
        assert enrolled_keys(session=session) == {}
        enroll_site(session=session, name="school-a", public_key=key_b, fingerprint=fingerprint(key_b), actor="t",
                    clock=clock)
        assert enrolled_keys(session=session) == {"school-a": key_b.strip()}
        assert [s.status for s in list_sites(session=session)] == ["enrolled"]
    with registry.session() as session, pytest.raises(NotFoundError):
        revoke_site(session=session, name="nobody")
