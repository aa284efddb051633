"""The admins' library of style LoRAs: adding a file, listing, removing, and turning the
styles a user names (`--style ikea:0.7`) into the engine's `StyleRef`s.

A file is checked before it is kept, from its bytes and never by loading it
(engine.models.styles, torch-free): its size, a safetensors header (pickle files such as
.ckpt are refused whatever their name), LoRA keys, and keys that fit the configured model
family. It is kept in the blob store under its sha256, which the engine checks again at
every load.

Removing a style does not reach into the engine: the engine's adapter cache (an LRU keyed
by sha256, a few adapters) lets a style nobody asks for any more age out.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot.core.types import BoothError
from engine.jobs import MAX_STYLES, STYLE_WEIGHT, RequestError, StyleRef
from engine.models.families import FAMILIES, Family
from engine.models.styles import StyleError, check_family, inspect_style
from storage import BlobStore, ports
from storage.records import StyleRecord

__all__ = ["LIBRARY_WEIGHT", "StyleLibrary", "asked_style"]

# The weight of a style a user named without one: the library's weight for it is used.
# Out of STYLE_WEIGHT's range, so an unresolved style can never reach the engine.
LIBRARY_WEIGHT = -1.0
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def asked_style(name: str, weight: float | None = None) -> StyleRef:
    """A style as a user names it; `StyleLibrary.resolve` fills in its file and trigger."""
    return StyleRef(name, blob="", sha256="", weight=LIBRARY_WEIGHT if weight is None else weight)


class StyleLibrary:
    def __init__(self, repo: ports.Repository, blobs: BlobStore, family: Family) -> None:
        self.repo = repo
        self.blobs = blobs
        self.family = family  # the configured model's: the only one a style may be for

    async def add(
        self,
        name: str,
        source: Path,
        *,
        added_by: str,
        weight: float | None = None,
        trigger: str = "",
        family: str | None = None,
    ) -> StyleRecord:
        """Check the style file at `source` and keep it as `name`; BoothError says why not."""
        trigger = " ".join(trigger.split())
        weight = STYLE_WEIGHT.default if weight is None else weight
        try:
            StyleRef(name, "-", "-", weight, trigger).check()
        except RequestError as exc:
            raise BoothError(f"Nothing was added: {exc}.") from None
        if family is not None and family != self.family.name:
            known = ", ".join(FAMILIES)
            if family not in FAMILIES:
                raise BoothError(f"There is no model family {family!r}; one of {known}.")
            raise BoothError(
                f"This booth runs {self.family.name} models: a style for {family} cannot be "
                f"used here. Add one made for {self.family.name}."
            )
        if await self.repo.style(name) is not None:
            raise BoothError(
                f"There is already a style {name!r}: remove it first (style remove {name}) "
                "or pick another name."
            )
        try:
            await asyncio.to_thread(self._check, source)
        except StyleError as exc:
            raise BoothError(f"Nothing was added: {exc}.") from None
        data = await asyncio.to_thread(source.read_bytes)
        key = await self.blobs.put(data)
        record = await self.repo.add_style(
            name,
            blob=key,
            sha256=hashlib.sha256(data).hexdigest(),
            weight=weight,
            trigger=trigger,
            family=self.family.name,
            added_by=added_by,
        )
        if record is None:  # added meanwhile by another admin
            if not await self.repo.blob_in_use(key):
                await self.blobs.delete(key)
            raise BoothError(f"There is already a style {name!r}.")
        return record

    async def add_bytes(
        self,
        name: str,
        data: bytes,
        filename: str,
        *,
        added_by: str,
        weight: float | None = None,
        trigger: str = "",
        family: str | None = None,
    ) -> StyleRecord:
        """`add` for a file sent in a chat: its bytes, under (a safe form of) its name."""
        shown = filename if _SAFE_NAME.fullmatch(filename) else "style.safetensors"
        with tempfile.TemporaryDirectory(prefix="selfiebooth-style-") as folder:
            path = Path(folder) / shown
            await asyncio.to_thread(path.write_bytes, data)
            return await self.add(
                name, path, added_by=added_by, weight=weight, trigger=trigger, family=family
            )

    def _check(self, source: Path) -> None:
        if not source.is_file():
            raise StyleError(f"there is no file {str(source)!r}")
        check_family(inspect_style(source), self.family)

    async def styles(self) -> list[StyleRecord]:
        """The styles a user may name, by name."""
        return [s for s in await self.repo.styles() if s.family == self.family.name]

    async def remove(self, name: str) -> StyleRecord:
        removed = await self.repo.remove_style(name)
        if removed is None:
            raise BoothError(f"There is no style {name!r}. {await self.known()}")
        if not await self.repo.blob_in_use(removed.blob):
            await self.blobs.delete(removed.blob)
        return removed

    async def known(self) -> str:
        """The library in a sentence, for a refusal."""
        names = [s.name for s in await self.styles()]
        if not names:
            return "The style library is empty."
        return f"Styles: {', '.join(names)}."

    async def resolve(self, asked: Sequence[StyleRef]) -> tuple[StyleRef, ...]:
        """The library's file and trigger words for each style named (its weight when the
        user gave none); BoothError for a style that is not in the library."""
        if len(asked) > MAX_STYLES:
            names = ", ".join(style.name for style in asked)
            raise BoothError(
                f"At most {MAX_STYLES} styles can be mixed, not {len(asked)} ({names})."
            )
        resolved = []
        for style in asked:
            found = await self.repo.style(style.name)
            if found is None or found.family != self.family.name:
                raise BoothError(f"There is no style {style.name!r}. {await self.known()}")
            weight = found.weight if style.weight == LIBRARY_WEIGHT else style.weight
            resolved.append(StyleRef(found.name, found.blob, found.sha256, weight, found.trigger))
        return tuple(resolved)
