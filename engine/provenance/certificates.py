"""The development signing pair for Content Credentials: a self-signed root and a signer
certificate it issues, made once and kept under the data directory.

Nobody else trusts this root, so a C2PA reader calls the pictures it signs "valid" (the
manifest is intact and signed) but never "trusted"; a deployment that wants trust names a
certificate from a C2PA-trusted authority in `provenance.certificate` and `.private_key`.
C2PA wants the signer to be an end-entity certificate with digitalSignature use and an
extended key use such as emailProtection, so a single self-signed certificate will not do.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERTIFICATE_FILE", "KEY_FILE", "development_pair"]

CERTIFICATE_FILE = "signer-chain.pem"  # the signer's certificate, then the root's
KEY_FILE = "signer-key.pem"
_VALID_DAYS = 3650
_ORGANISATION = "selfiebooth development (not trusted)"


def development_pair(directory: Path) -> tuple[Path, Path]:
    """The (certificate chain, private key) files in `directory`, made if missing."""
    chain, key_file = directory / CERTIFICATE_FILE, directory / KEY_FILE
    if chain.is_file() and key_file.is_file():
        return chain, key_file
    directory.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(
        "selfiebooth development root", None, root_key.public_key(), root_key, authority=True
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate("selfiebooth signer", root, key.public_key(), root_key, authority=False)
    pem = serialization.Encoding.PEM
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key first, readable by this user only; the chain last, as the sign it is done.
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(private)
    chain.write_bytes(signer.public_bytes(pem) + root.public_bytes(pem))
    return chain, key_file


def _certificate(
    name: str,
    issuer: x509.Certificate | None,
    public_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    authority: bool,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(
            x509.BasicConstraints(ca=authority, path_length=0 if authority else None),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not authority,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=authority,
                crl_sign=authority,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if not authority:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())
