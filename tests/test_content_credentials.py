"""C2PA Content Credentials: signing with the development pair or a configured one, what
the manifest holds, and the reading of intact, changed and unsigned pictures."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from helpers_c2pa import assert_selfiebooth_manifest, c2pa_manifest, with_other_pixels
from PIL import Image

from bot.config import ConfigError, load_config
from bot.core.app import engine_options
from bot.core.provenance import FittedImage, Provenance
from engine.provenance.certificates import development_pair
from engine.provenance.credentials import ContentCredentials, read_credentials


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> ContentCredentials:
    return ContentCredentials(*development_pair(tmp_path_factory.mktemp("provenance")))


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_a_signed_picture_holds_the_created_action_generator_family_and_job(
    credentials: ContentCredentials, fmt: str, mime: str
) -> None:
    plain = _encoded(fmt)
    signed = credentials.sign(plain, job_id=41, family="tiny", tool="txt2img")
    if fmt == "PNG":
        assert_selfiebooth_manifest(signed, 41)
    state, manifest = c2pa_manifest(signed, mime)
    assert state == "Valid" and manifest["title"] == "selfiebooth job 41"
    with Image.open(io.BytesIO(signed)) as back, Image.open(io.BytesIO(plain)) as before:
        assert back.format == fmt and back.tobytes() == before.tobytes()
    reading = read_credentials(signed)
    assert (reading.state, reading.job_id, reading.model_family) == ("valid", 41, "tiny")
    assert reading.problems == () and reading.actions == ("c2pa.created",)
    assert reading.describe().startswith("Content Credentials (C2PA): valid, signer not on")


def test_pictures_made_from_another_also_say_they_were_edited(
    credentials: ContentCredentials,
) -> None:
    for tool in ("img2img", "edit", "upscale"):
        signed = credentials.sign(_encoded("PNG"), job_id=7, family="tiny", tool=tool)
        assert_selfiebooth_manifest(signed, 7, edited=True)
    for tool in ("txt2img", "edges"):
        signed = credentials.sign(_encoded("PNG"), job_id=7, family="tiny", tool=tool)
        assert_selfiebooth_manifest(signed, 7)


def test_pixels_changed_after_signing_fail_validation(credentials: ContentCredentials) -> None:
    signed = credentials.sign(_encoded("PNG"), job_id=9, family="tiny", tool="txt2img")
    changed = with_other_pixels(signed)
    assert c2pa_manifest(changed)[0] == "Invalid"
    reading = read_credentials(changed)
    assert reading.state == "invalid" and "assertion.dataHash.mismatch" in reading.problems
    assert "INVALID" in reading.describe() and "changed after signing" in reading.describe()


def test_unsigned_and_foreign_bytes_read_absent(credentials: ContentCredentials) -> None:
    assert read_credentials(_encoded("PNG")).state == "absent"
    assert read_credentials(b"not an image at all").state == "absent"
    assert read_credentials(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).state in ("absent", "invalid")
    with pytest.raises(ValueError, match="only PNG and JPEG"):
        credentials.sign(_encoded("WEBP"), job_id=1, family="tiny", tool="txt2img")


def test_the_development_pair_is_made_once_and_its_key_kept_private(tmp_path: Path) -> None:
    chain, key = development_pair(tmp_path)
    assert os.stat(key).st_mode & 0o077 == 0
    first = (chain.read_bytes(), key.read_bytes())
    assert development_pair(tmp_path) == (chain, key)
    assert (chain.read_bytes(), key.read_bytes()) == first
    assert chain.read_bytes().count(b"BEGIN CERTIFICATE") == 2  # the signer, then the root


def test_a_configured_pair_is_used_and_a_half_or_missing_one_refused(tmp_path: Path) -> None:
    chain, key = development_pair(tmp_path / "mine")
    config = tmp_path / "config.toml"
    config.write_text(f'[provenance]\ncertificate = "{chain}"\nprivate_key = "{key}"\n')
    options = engine_options(load_config(config, environ={}, data_dir=tmp_path / "data"))
    assert (options.certificate, options.private_key) == (chain, key)
    assert not (tmp_path / "data" / "provenance").exists()
    defaults = engine_options(load_config(None, environ={}, data_dir=tmp_path / "data"))
    assert defaults.certificate.parent == tmp_path / "data" / "provenance"
    assert defaults.certificate.is_file() and defaults.private_key.is_file()

    config.write_text(f'[provenance]\ncertificate = "{chain}"\n')
    with pytest.raises(ConfigError, match="set both or neither"):
        load_config(config, environ={})
    config.write_text(
        f'[provenance]\ncertificate = "{chain}"\nprivate_key = "{tmp_path / "nope.pem"}"\n'
    )
    with pytest.raises(ConfigError, match=r"provenance\.private_key = .*no such file"):
        load_config(config, environ={})


def test_a_copy_made_smaller_for_a_chat_is_signed_again(tmp_path: Path) -> None:
    config = load_config(None, environ={}, data_dir=tmp_path)
    provenance = Provenance(config)
    out = io.BytesIO()
    Image.effect_noise((320, 256), 60).convert("RGB").save(out, "PNG")
    signed = provenance.credentials.sign(out.getvalue(), job_id=5, family="tiny", tool="edit")
    assert provenance.fit(signed, len(signed)) == FittedImage(signed, 1.0)
    fitted = provenance.fit(signed, len(signed) // 2)
    assert fitted is not None and fitted.scale < 1 and len(fitted.data) <= len(signed) // 2
    assert_selfiebooth_manifest(fitted.data, 5, edited=True, resized=True)
    # A picture that was not signed (or no longer validates) is not vouched for.
    for unsigned in (out.getvalue(), with_other_pixels(signed)):
        smaller = provenance.fit(unsigned, len(unsigned) // 2)
        assert smaller is not None and read_credentials(smaller.data).state == "absent"
    assert provenance.fit(signed, 100) is None
