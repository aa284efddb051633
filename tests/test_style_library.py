"""The style library in the core: the admin commands that fill it (with their refusals),
and /imagine's `--style` resolved from it, through reroll too. No engine runs here; the
journeys that draw with a style are in test_cli.py and the chats' tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers_styles import lora_file, not_a_lora, pickled

from bot.config import Config
from bot.core import Booth, BoothError, Identity, open_booth
from bot.core.options import OptionError, parse_imagine
from bot.core.types import NotAuthorized
from engine.jobs import ImagineRequest, StyleRef
from storage import NewPhoto

OPERATOR = Identity("cli", "operator")
ALICE = Identity("telegram", "4401")


@pytest.fixture
async def sbooth(config: Config) -> AsyncIterator[Booth]:
    async with open_booth(config) as booth:  # the tiny family: a style's width is 32
        yield booth


async def add(booth: Booth, line: str, attachment: bytes | None = None) -> str:
    return await booth.admin.run(OPERATOR, line, attachment, local_files=True)


async def test_an_admin_adds_lists_and_removes_styles(sbooth: Booth, tmp_path: Path) -> None:
    ikea = lora_file(tmp_path / "ikea.safetensors")
    answer = await add(sbooth, f"style add ikea {ikea} --weight 0.7 --trigger flat pack art")
    assert answer.startswith("Style 'ikea' added: weight 0.7, trigger words 'flat pack art'")
    # From a chat, the file is the attachment: a path in the text is never read there.
    chat = await sbooth.admin.run(
        OPERATOR, "style add ghibli", lora_file(tmp_path / "g.safetensors", seed=1).read_bytes()
    )
    assert "Style 'ghibli' added: weight 1" in chat
    with pytest.raises(BoothError, match=r"Attach the style's \.safetensors file"):
        await sbooth.admin.run(OPERATOR, f"style add other {ikea}")

    listed = await add(sbooth, "style list")
    assert listed.splitlines()[0].startswith("ghibli: weight 1, for tiny, added by cli:operator")
    assert listed.splitlines()[1].startswith("ikea: weight 0.7, trigger words 'flat pack art'")
    style = await sbooth.repo.style("ikea")
    assert style is not None and await sbooth.blobs.get(style.blob) == ikea.read_bytes()

    assert await add(sbooth, "style remove ikea") == "Style 'ikea' removed."
    assert not await sbooth.blobs.exists(style.blob)
    with pytest.raises(BoothError, match=r"There is no style 'ikea'\. Styles: ghibli\."):
        await add(sbooth, "style remove ikea")
    actions = [e.action for e in await sbooth.repo.audit_entries()]
    assert actions[:3] == ["admin.style.remove", "admin.style.add", "admin.style.add"]


@pytest.mark.parametrize(
    ("make", "line", "refusal"),
    [
        (pickled, "style add x {file}", "'x.ckpt' is a .ckpt file, a pickle-based format"),
        (pickled, "style add x {file}", "holds a pickle"),  # named .safetensors
        (not_a_lora, "style add x {file}", "holds no LoRA weights"),
        (None, "style add x {file}", "is a LoRA for SD1.x"),
        (None, "style add x {file} --family sdxl", "This booth runs tiny models"),
        (None, "style add x {file} --family sd3", "There is no model family 'sd3'"),
        (None, "style add Bad! {file}", "style name 'Bad!' is not allowed"),
        (None, "style add x {file} --weight 3", "weight of style 'x' must be 0 to 2, got 3.0"),
        (None, "style add x {file} --weight lots", "--weight needs a number 0 to 2, not 'lots'"),
        (None, "style add x user/ikea-lora", "'user/ikea-lora' looks like a hub id"),
        (None, "style add x missing.safetensors", "There is no file 'missing.safetensors'"),
    ],
)
async def test_a_style_that_cannot_be_used_is_refused_and_nothing_is_kept(
    sbooth: Booth, tmp_path: Path, make: object, line: str, refusal: str
) -> None:
    if make is pickled:
        suffix = ".ckpt" if "ckpt" in refusal else ".safetensors"
        path = pickled(tmp_path / f"x{suffix}")
    elif make is not_a_lora:
        path = not_a_lora(tmp_path / "x.safetensors")
    else:
        path = lora_file(tmp_path / "x.safetensors", width=768 if "SD1" in refusal else 32)
    with pytest.raises(BoothError) as refused:
        await add(sbooth, line.format(file=path))
    assert refusal in str(refused.value)
    assert await sbooth.repo.styles() == []
    assert not any(p.is_file() for p in sbooth.config.blob_dir.rglob("*"))


async def test_a_name_is_taken_once_and_only_admins_manage_styles(
    sbooth: Booth, tmp_path: Path
) -> None:
    await add(sbooth, f"style add ikea {lora_file(tmp_path / 'a.safetensors')}")
    with pytest.raises(BoothError, match="There is already a style 'ikea'"):
        await add(sbooth, f"style add ikea {lora_file(tmp_path / 'b.safetensors', seed=2)}")
    with pytest.raises(NotAuthorized):
        await sbooth.admin.run(ALICE, "style list")
    with pytest.raises(NotAuthorized):
        await sbooth.admin.run(ALICE, "style remove ikea")
    assert [s.name for s in await sbooth.repo.styles()] == ["ikea"]


async def _user_with_model(booth: Booth) -> None:
    await booth.accept_consent(ALICE)
    user = await booth.repo.find_user(ALICE.platform, ALICE.user_id)
    assert user is not None
    key = await booth.blobs.put(b"a photo")
    photo = NewPhoto("1" * 64, key, key, b"\0" * 512, "0" * 16, (0, 0, 9, 9), 100.0)
    await booth.repo.add_photos(user.id, [photo])
    blob = await booth.blobs.put(b"lora weights")
    await booth.repo.add_lora(
        user.id, base_model="tiny", family="tiny", trigger_word="zovaka", blob=blob,
        sha256="0" * 64, recipe={},
    )  # fmt: skip


async def _queued(booth: Booth, job_id: int) -> ImagineRequest:
    job = await booth.jobs.get(job_id)
    assert job is not None
    request = job.request()
    assert isinstance(request, ImagineRequest)
    return request


async def test_imagine_names_styles_and_the_core_finds_their_files(
    sbooth: Booth, tmp_path: Path
) -> None:
    await add(sbooth, f"style add ikea {lora_file(tmp_path / 'i.safetensors')} --weight 0.7 "
              "--trigger flat pack")  # fmt: skip
    await add(sbooth, f"style add ghibli {lora_file(tmp_path / 'g.safetensors', seed=3)}")
    ikea, ghibli = await sbooth.repo.style("ikea"), await sbooth.repo.style("ghibli")
    assert ikea is not None and ghibli is not None
    await _user_with_model(sbooth)

    # No weight given: the library's; one given: that one.
    ticket = await sbooth.imagine(ALICE, parse_imagine("me on a sofa --style IKEA ghibli:1.5"))
    asked = await _queued(sbooth, ticket.job_id)
    assert asked.prompt == "me on a sofa"
    assert asked.styles == (
        StyleRef("ikea", ikea.blob, ikea.sha256, 0.7, "flat pack"),
        StyleRef("ghibli", ghibli.blob, ghibli.sha256, 1.5, ""),
    )
    # A reroll keeps the styles and their weights.
    rerolled = await _queued(sbooth, (await sbooth.reroll(ALICE, ticket.job_id)).job_id)
    assert rerolled.styles == asked.styles

    with pytest.raises(BoothError, match=r"There is no style 'lego'\. Styles: ghibli, ikea\."):
        await sbooth.imagine(ALICE, parse_imagine("me --style lego"))
    # A front end that builds the request itself (Discord) is held to the same range.
    with pytest.raises(BoothError, match="the weight of style 'ikea' must be 0 to 2, got 3"):
        await sbooth.imagine(ALICE, ImagineRequest("me", styles=(StyleRef("ikea", "", "", 3.0),)))
    # Removed from the library: no longer named, rerolls included.
    await add(sbooth, "style remove ghibli")
    with pytest.raises(BoothError, match=r"There is no style 'ghibli'\. Styles: ikea\."):
        await sbooth.reroll(ALICE, ticket.job_id)
    detail = json.loads((await sbooth.repo.audit_entries(1))[0].detail)
    assert detail == {"style": "ghibli"}


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("me --style ikea:3", "The weight of style 'ikea' must be a number 0 to 2, not '3'"),
        ("me --style ikea:-1", "The weight of style 'ikea' must be a number 0 to 2, not '-1'"),
        ("me --style a b c", "At most 2 styles can be mixed, not 3"),
        ("me --style", "--style needs a style's name"),
        ("me --style ik/ea", "'ik/ea' is not a style name"),
    ],
)
def test_style_options_that_cannot_be_read(text: str, refusal: str) -> None:
    with pytest.raises(OptionError) as refused:
        parse_imagine(text)
    assert refusal in str(refused.value)
