"""Connections that break and work that outlives them: the gateway dropped mid-training
and resumed, the bot restarted mid-training, interaction tokens that end before the job,
a channel the bot may not write to, and Discord's rate limits.

One scenario, so that the engine trains once: each step needs a model or a running job.
"""

from __future__ import annotations

import dataclasses

from discord_harness import ANN, TIMEOUT, consent, running_bot, seed_photos, shows
from fakes.discord_api import CHANNEL_ID, FakeDiscord
from fakes.discord_records import Buckets

from bot.config import Config


async def test_broken_connections_and_ended_tokens(
    fake: FakeDiscord, discord_config: Config
) -> None:
    # Eight steps leave time to break things mid-training; no previews (engine time).
    training = dataclasses.replace(
        discord_config.training, steps=8, checkpoint_every=4, sample_every=0
    )
    config = dataclasses.replace(discord_config, training=training)
    # Two requests a second per token: edits every 0.4 s only keep within it by waiting
    # as the rate-limit headers say (a request beyond it is a violation).
    fake.buckets = Buckets(2, 1.0)
    async with running_bot(config, fake) as bot:
        await consent(fake, ANN)
        await seed_photos(bot.booth, ANN)
        train = await fake.command(ANN, "train")
        progress = await fake.reply(train)
        await shows(fake, progress, "step", "training progress")
        session = fake.session_id

        # The connection breaks; a command sent meanwhile arrives with the RESUME.
        await fake.drop_gateway()
        fake.throttle_next("PATCH")  # and Discord rate-limits the bot's answer once
        status = await fake.command(ANN, "status")
        answer = await fake.reply(status, "the answer after the RESUME")
        assert "Photos: 3" in answer.content
        resume = fake.frames(6)[-1]["d"]
        assert resume["session_id"] == session and resume["seq"] >= 1
        assert fake.connections == ["/gateway", "/resume"] and len(fake.frames(2)) == 1
        limited = fake.bot_requests(rf"PATCH .*/{status.token}/messages")
        assert [r.status for r in limited] == [429, 200]
        assert limited[1].at - limited[0].at >= 0.3  # Retry-After was waited out

    # The bot stops mid-training; the next run finishes the job and says so by DM.
    assert "ready" not in progress.content
    async with running_bot(config, fake) as bot:
        ready = await fake.wait_for(
            lambda: [m for m in fake.dm_messages(ANN) if "version 1 is ready" in m.content],
            "the DM that the model is ready",
            TIMEOUT,
        )
        assert len(ready) == 1
        assert await bot.front.chats.owed("discord") == []

        # The token ends while the pictures are made: they are posted in the channel.
        imagine = await fake.command(ANN, "imagine", {"prompt": "a hat", "steps": 2})
        await fake.reply(imagine)
        fake.expire(imagine)
        posted = await fake.wait_for(
            lambda: fake.channel_messages(CHANNEL_ID), "the pictures in the channel", TIMEOUT
        )
        assert "AI-generated image" in posted[0].content and len(posted[0].attachments) == 1
        assert posted[0].button("Reroll").startswith("sb:reroll:")
        # One refused request tells the bot the token is over; it does not try again.
        used = [r.status for r in fake.bot_requests(imagine.token)]
        assert used.count(401) == 1 and used[-1] == 401

        # Where the bot may not write, the pictures come by DM.
        fake.forbidden_channels.add(CHANNEL_ID)
        again = await fake.command(ANN, "imagine", {"prompt": "a scarf", "steps": 2})
        await fake.reply(again)
        fake.expire(again)
        dm = await fake.wait_for(
            lambda: [m for m in fake.dm_messages(ANN) if "a scarf" in m.content],
            "the pictures by DM",
            TIMEOUT,
        )
        assert len(dm[0].attachments) == 1 and dm[0].button("Delete")
        await fake.settled()
