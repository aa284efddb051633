"""Every admin operation is refused to non-admins, whatever the front end, and audited."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.core import Booth, Identity, open_booth
from bot.core.admin import AdminConsole
from bot.core.authorization import AdminAuthorization
from bot.core.erasure import Eraser
from bot.core.likeness import LikenessGuard
from bot.core.moderation import Moderation
from bot.core.types import NotAuthorized
from engine.jobs import ImagineRequest
from storage import Database, LocalBlobStore, Repository
from storage.jobs import JobQueue

TELEGRAM_ADMIN = Identity("telegram", "1001")
DISCORD_ADMIN = Identity("discord", "2002")
# Right number, wrong platform; and plain users.
NON_ADMINS = [
    Identity("telegram", "2002"),
    Identity("discord", "1001"),
    Identity("telegram", "5"),
    Identity("discord", "6"),
    Identity("matrix", "1001"),
]

Operation = Callable[[AdminConsole, Identity], Awaitable[Any]]
OPERATIONS: dict[str, Operation] = {
    "ban": lambda c, who: c.ban(who, "#1", "spam"),
    "unban": lambda c, who: c.unban(who, "#1", "ok"),
    "purge": lambda c, who: c.purge(who, "#1", "order"),
    "review": lambda c, who: c.review_queue(who),
    "decide": lambda c, who: c.decide(who, 1, "approve"),
    "quota": lambda c, who: c.quota(who, "#1", 5, 1),
    "pause": lambda c, who: c.pause(who, "x"),
    "resume": lambda c, who: c.resume(who),
    "stats": lambda c, who: c.stats(who),
    "blocklist": lambda c, who: c.blocklist(who),
    "blocklist-add": lambda c, who: c.blocklist_add(who, "hate", "x"),
    "blocklist-remove": lambda c, who: c.blocklist_remove(who, "hate", "x"),
    "check-prompt": lambda c, who: c.check_prompt(who, "a cat"),
    "review-decisions": lambda c, who: c.review_decisions(who),
    "trace": lambda c, who: c.trace(who, b"not an image"),
    "audit": lambda c, who: c.audit_log(who),
    "console": lambda c, who: c.run(who, "stats"),
    "web": lambda c, who: c.web_link(who),
}


@pytest.fixture
async def admin_booth(config: Config) -> AsyncIterator[Booth]:
    config = dataclasses.replace(
        config,
        telegram=dataclasses.replace(config.telegram, admin_ids=("1001",)),
        discord=dataclasses.replace(config.discord, admin_ids=("2002",)),
        web=dataclasses.replace(config.web, listen="127.0.0.1:8080"),
    )
    async with open_booth(config) as booth:
        yield booth


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_every_operation_is_refused_to_non_admins_and_audited(
    admin_booth: Booth, operation: str
) -> None:
    await admin_booth.accept_consent(NON_ADMINS[2])  # a registered user, user #1
    for who in NON_ADMINS:
        with pytest.raises(NotAuthorized, match="for the bot's admins only"):
            await OPERATIONS[operation](admin_booth.admin, who)
    entries = await admin_booth.repo.audit_entries()
    assert [e.action for e in entries] == ["admin.refused"] * len(NON_ADMINS)
    # Refused callers are named by platform and internal number, not their account id.
    assert {e.actor for e in entries} == {
        "telegram non-user",
        "discord non-user",
        "telegram user #1",
        "matrix non-user",
    }
    # Nothing was done: user #1 is neither banned nor purged, the queue is not paused.
    user = await admin_booth.repo.find_user("telegram", "5")
    assert user is not None and user.ban_reason is None
    assert await admin_booth.repo.setting("queue_paused") is None


@pytest.mark.parametrize("admin", [TELEGRAM_ADMIN, DISCORD_ADMIN], ids=["telegram", "discord"])
async def test_the_admins_named_in_the_config_may(admin_booth: Booth, admin: Identity) -> None:
    await admin_booth.accept_consent(NON_ADMINS[2])
    assert "banned" in await admin_booth.admin.run(admin, "ban #1 3d testing")
    entry = (await admin_booth.repo.audit_entries())[0]
    assert (entry.actor, entry.action) == (f"{admin.platform}:{admin.user_id}", "admin.ban")
    assert admin_booth.is_admin(admin) and not admin_booth.is_admin(NON_ADMINS[0])


async def test_the_console_runs_on_its_services_alone(config: Config, tmp_path: Path) -> None:
    """No Booth: storage, the queue, moderation, erasure and the admins are all it needs."""
    async with Database(tmp_path / "alone.sqlite3") as db:
        repo, queue = Repository(db), JobQueue(db)
        blobs = LocalBlobStore(tmp_path / "blobs")
        moderation = Moderation(repo, config.moderation)
        likeness = LikenessGuard(repo, config.intake)
        eraser = Eraser(config, repo, blobs, moderation, likeness, None, defaultdict(asyncio.Lock))
        console = AdminConsole(
            repo, queue, moderation, eraser, AdminAuthorization(config, repo), None
        )
        ann = await repo.get_or_create_user("telegram", "5")
        queued = await queue.enqueue(ann.id, ImagineRequest("a portrait"))
        operator = Identity("cli", "operator")
        assert await console.run(operator, "ban telegram:5 2d spam") == (
            f"User #{ann.id} is banned until {(await repo.get_user(ann.id)).banned_until} UTC."  # type: ignore[union-attr]
        )
        assert (await queue.get(queued.id)).status == "cancelled"  # type: ignore[union-attr]
        assert "queue: 0 waiting, 0 running" in await console.run(operator, "stats")
        assert "purged" in await console.run(operator, f"purge #{ann.id} court order")
        assert await repo.get_user(ann.id) is None
        with pytest.raises(NotAuthorized):
            await console.run(Identity("telegram", "5"), "stats")
