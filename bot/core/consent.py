"""The consent text: its version, its words and their hash, as recorded with each consent."""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from bot.config import ConfigError, ConsentConfig

__all__ = ["ConsentText", "load_consent_text"]


@dataclass(frozen=True, slots=True)
class ConsentText:
    version: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_consent_text(config: ConsentConfig) -> ConsentText:
    if config.text_file:
        try:
            text = Path(config.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"consent.text_file = {config.text_file!r} cannot be read: {exc}"
            ) from None
    else:
        text = importlib.resources.files("bot.core").joinpath("consent.md").read_text("utf-8")
    if not text.strip():
        raise ConfigError(f"consent.text_file = {config.text_file!r} is empty")
    return ConsentText(config.version, text.strip())
