"""C2PA Content Credentials: the signed manifest every picture carries out of the engine,
and the reading of one (what `admin trace` says).

The manifest says what a platform showing "AI info" looks for: a `c2pa.created` action
with the IPTC digital source type trainedAlgorithmicMedia, the generator (selfiebooth and
its version) and, in an `org.selfiebooth.job` assertion, the job id, the base model's
family and the tool; never who asked for it. A picture that started from another (image-to-image, an
edit, an upscale) also gets a `c2pa.edited` action. The source picture is not attached
as an ingredient: it is the user's own photo, and it is erased with its job.

The manifest is signed with the certificate chain and key of `provenance.certificate`
and `.private_key` (engine.provenance.certificates makes a development pair when none is
configured). No claim thumbnail: it would be a second copy of the picture in its file.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import c2pa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.provenance import DIGITAL_SOURCE_TYPE

__all__ = [
    "EDITING_TOOLS",
    "JOB_ASSERTION",
    "ContentCredentials",
    "CredentialsReading",
    "read_credentials",
]

JOB_ASSERTION = "org.selfiebooth.job"
# Tools whose picture starts from another one (engine.jobs.tool_of).
EDITING_TOOLS = {"img2img": "image-to-image", "edit": "inpainting", "upscale": "upscale"}
_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}
_CURVES = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
_UNTRUSTED = "signingCredential.untrusted"
_MIME = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg"}


@cache
def _version() -> str:
    try:
        return metadata.version("selfiebooth")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _algorithm(key_pem: bytes) -> str:
    """The C2PA signing algorithm of a PEM private key."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name]
    raise ValueError(
        "the provenance private key must be EC (P-256, P-384 or P-521), Ed25519 or RSA"
    )


class ContentCredentials:
    """Signs pictures with one certificate chain and key; safe to share between threads."""

    def __init__(self, certificate: Path, private_key: Path) -> None:
        key_pem = private_key.read_bytes()
        info = c2pa.C2paSignerInfo(_algorithm(key_pem), certificate.read_bytes(), key_pem, None)
        self._signer = c2pa.Signer.from_info(info)
        self._context = c2pa.Context.from_dict(_SETTINGS)
        self._lock = threading.Lock()

    def sign(
        self, data: bytes, *, job_id: int, family: str, tool: str, resized: bool = False
    ) -> bytes:
        """`data` (a PNG or JPEG) with a manifest for a picture of job `job_id` made with
        `tool` (engine.jobs.tool_of); `resized` when it is a smaller copy of one."""
        mime = _mime(data)
        if mime is None:
            raise ValueError("only PNG and JPEG pictures are signed")
        out = io.BytesIO()
        with self._lock:
            builder = c2pa.Builder(_manifest(job_id, family, tool, resized), self._context)
            builder.sign(self._signer, mime, io.BytesIO(data), out)
        return out.getvalue()


def _manifest(job_id: int, family: str, tool: str, resized: bool) -> str:
    agent = {"name": "selfiebooth", "version": _version()}
    actions: list[dict[str, Any]] = [
        {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": agent}
    ]
    if tool in EDITING_TOOLS:
        actions.append(
            {"action": "c2pa.edited", "softwareAgent": agent, "description": EDITING_TOOLS[tool]}
        )
    if resized:
        actions.append({"action": "c2pa.resized", "softwareAgent": agent})
    return json.dumps(
        {
            "claim_generator_info": [agent],
            "title": f"selfiebooth job {job_id}",
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": actions}},
                {
                    "label": JOB_ASSERTION,
                    "data": {"job_id": job_id, "model_family": family, "tool": tool},
                },
            ],
        }
    )


def _mime(data: bytes) -> str | None:
    return next((mime for magic, mime in _MIME.items() if data.startswith(magic)), None)


@dataclass(frozen=True, slots=True)
class CredentialsReading:
    """What a picture's Content Credentials say, as far as they can be read."""

    # "absent", or the reader's verdict: "invalid", "valid" (intact and signed, by an
    # issuer no trust list here holds) or "trusted".
    state: str
    job_id: int | None = None
    model_family: str = ""
    tool: str = ""
    actions: tuple[str, ...] = ()
    digital_source_type: str = ""
    generator: str = ""
    signer: str = ""  # the signing certificate's common name and issuer
    problems: tuple[str, ...] = ()  # the validation failure codes

    def describe(self) -> str:
        """One sentence for an admin's trace."""
        if self.state == "absent":
            return "No Content Credentials (C2PA) found."
        what = (
            f"job {self.job_id}" if self.job_id is not None else "no selfiebooth job"
        ) + f", {', '.join(self.actions) or 'no actions'}, made by {self.generator or '?'}"
        if self.state == "invalid":
            return (
                f"Content Credentials (C2PA) present but INVALID ({', '.join(self.problems)}): "
                f"the picture or its manifest was changed after signing ({what})."
            )
        trust = "trusted" if self.state == "trusted" else "valid, signer not on a trust list"
        return f"Content Credentials (C2PA): {trust}, signed by {self.signer}; {what}."


def read_credentials(data: bytes) -> CredentialsReading:
    """The Content Credentials in encoded picture bytes (c2pa-python's reader checks the
    signature and the hashes of the pixels); "absent" for a file without any, or one the
    reader cannot parse."""
    mime = _mime(data)
    if mime is None:
        return CredentialsReading("absent")
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
        if reader is None:
            return CredentialsReading("absent")
        with reader:
            state = (reader.get_validation_state() or "invalid").lower()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError:
        return CredentialsReading("invalid", problems=("unreadable manifest",))
    return _reading(state, manifest, results)


def _reading(state: str, manifest: dict[str, Any], results: dict[str, Any]) -> CredentialsReading:
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    job = assertions.get(JOB_ASSERTION, {})
    actions: list[dict[str, Any]] = next(
        (assertions[label]["actions"] for label in ("c2pa.actions.v2", "c2pa.actions")
         if label in assertions),
        [],
    )  # fmt: skip
    failures = results.get("activeManifest", {}).get("failure", [])
    generator: dict[str, Any] = next(iter(manifest.get("claim_generator_info", [])), {})
    signature = manifest.get("signature_info", {})
    job_id = job.get("job_id")
    return CredentialsReading(
        state=state,
        job_id=job_id if isinstance(job_id, int) else None,
        model_family=str(job.get("model_family", "")),
        tool=str(job.get("tool", "")),
        actions=tuple(str(a.get("action", "")) for a in actions),
        digital_source_type=next(
            (str(a["digitalSourceType"]) for a in actions if "digitalSourceType" in a), ""
        ),
        generator=f"{generator.get('name', '')} {generator.get('version', '')}".strip(),
        signer=f"{signature.get('common_name', '?')} ({signature.get('issuer', '?')})",
        # Trust is the state's to say; the failures are what else went wrong.
        problems=tuple(code for f in failures if (code := str(f.get("code", ""))) != _UNTRUSTED),
    )
