"""The bot's side of provenance: the deployment's signing pair, and pictures made smaller
to fit a chat's upload limit, which are signed again so that they keep their Content
Credentials.

The engine signs every picture it makes. A chat that cannot take a file that large gets
a smaller copy; re-encoding drops the manifest, so the copy is signed with the same job,
family and tool as the original said, and a `c2pa.resized` action.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from PIL import Image, PngImagePlugin

from bot.config import Config
from engine.provenance.certificates import development_pair
from engine.provenance.credentials import ContentCredentials, read_credentials

__all__ = ["FittedImage", "Provenance", "signing_pair"]

# Pictures are never shrunk below this side: smaller is no longer worth sending.
_MIN_SIDE = 32
_SHRINK = 0.8


def signing_pair(config: Config) -> tuple[Path, Path]:
    """The configured certificate chain and key, or the development pair (made at the
    first call) under the data directory."""
    certificate, private_key = config.provenance.certificate, config.provenance.private_key
    if not certificate:
        return development_pair(config.provenance_dir)
    return Path(certificate).expanduser(), Path(private_key).expanduser()


@dataclass(frozen=True, slots=True)
class FittedImage:
    data: bytes
    # Pixels kept on each side, as a fraction of the original (1.0: untouched).
    scale: float


class Provenance:
    def __init__(self, config: Config) -> None:
        self._config = config

    @cached_property
    def credentials(self) -> ContentCredentials:
        return ContentCredentials(*signing_pair(self._config))

    def fit(self, png: bytes, limit: int) -> FittedImage | None:
        """The PNG as it is if it fits in `limit` bytes, else smaller PNGs until one fits.

        A smaller copy keeps the PNG text chunks (the AI statement) and, when the
        original had valid Content Credentials, is signed again; None if even the
        smallest copy does not fit.
        """
        if len(png) <= limit:
            return FittedImage(png, 1.0)
        original = read_credentials(png)
        signed = original.state in ("valid", "trusted") and original.job_id is not None
        with Image.open(io.BytesIO(png)) as img:
            img.load()
            info = PngImagePlugin.PngInfo()
            for key, value in getattr(img, "text", {}).items():
                info.add_text(key, value)
            width, height = img.size
            scale = 1.0
            while min(width, height) * scale * _SHRINK >= _MIN_SIDE:
                scale *= _SHRINK
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                out = io.BytesIO()
                img.resize(size, Image.Resampling.LANCZOS).save(
                    out, format="PNG", optimize=True, pnginfo=info
                )
                data = out.getvalue()
                if signed:
                    assert original.job_id is not None
                    data = self.credentials.sign(
                        data,
                        job_id=original.job_id,
                        family=original.model_family,
                        tool=original.tool,
                        resized=True,
                    )
                if len(data) <= limit:
                    return FittedImage(data, scale)
        return None
