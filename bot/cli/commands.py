"""The command line's commands: each parses nothing more, calls the core and prints its
answer (bot.cli.output). `main` is the entry point of `selfiebooth`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from bot.cli.output import follow, format_status, save_images
from bot.cli.parser import PLATFORM, build_parser
from bot.cli.progress import Progress
from bot.config import Config, ConfigError, load_config
from bot.core import Booth, BoothError, Identity, ImagineRequest, Upload, open_booth
from bot.core.captions import export_caption
from bot.core.options import parse_styles
from bot.core.summaries import erasure_text
from bot.doctor import diagnose, report
from bot.operations import HttpServer, http_servers
from engine.intake.names import shown_name
from engine.jobs import DEFAULT_ASPECT, GUIDANCE, STEPS, STRENGTH
from engine.logs import configure_logging
from engine.safety.classifier import MODEL_PATH

__all__ = ["main"]

_log = logging.getLogger("selfiebooth")
_FOLLOW_INTERVAL = 1.0  # seconds between looks at the config file's modification time


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":  # before the config is read: a bad config is a finding
        return _doctor(args)
    if args.command == "worker":  # a GPU machine: no config, no database
        return _worker(args)
    try:
        config = load_config(args.config, data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"selfiebooth: configuration error: {exc}", file=sys.stderr)
        return 2
    # One-shot commands print their answers; their log stays quiet unless asked.
    level: int = logging.getLevelName(config.log_level)
    if args.verbose:
        level = logging.DEBUG
    elif args.command != "run":
        level = max(logging.WARNING, level)
    config = dataclasses.replace(config, log_level=logging.getLevelName(level))
    tokens = (config.telegram_token, config.discord_token)
    configure_logging(level, config.log_format, secrets=[t.get() for t in tokens if t])
    try:
        return asyncio.run(_run(args, config))
    except ConfigError as exc:
        print(f"selfiebooth: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _doctor(args: argparse.Namespace) -> int:
    findings = asyncio.run(
        diagnose(args.config, args.data_dir, online=args.online, chats=args.chats)
    )
    print(report(findings))
    return 1 if any(f.level == "FAIL" for f in findings) else 0


def _worker(args: argparse.Namespace) -> int:
    """`ray start` joining the cluster, in place of this process."""
    if importlib.util.find_spec("ray") is None:
        print(
            "selfiebooth: Ray is not installed here: pip install 'selfiebooth[cluster]'",
            file=sys.stderr,
        )
        return 2
    if args.engines < 0:
        print("selfiebooth: --engines must be 0 or more", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "ray.scripts.scripts", "start"]
    command += [f"--address={args.address}", "--block"]
    if args.engines:
        command += [f"--resources={json.dumps({'engine': args.engines})}"]
    print("selfiebooth: " + " ".join(command[1:]), flush=True)
    os.execv(sys.executable, command)  # noqa: S606 (argv from parsed options, no shell)


async def _run(args: argparse.Namespace, config: Config) -> int:
    if args.command == "demo":
        from bot.demo import run_demo

        return await run_demo(config, args.photos)
    if args.command == "run":
        return await _work_queue(config, args.config)
    if args.command == "admin":
        return await _admin(config, args.words)
    dispatch = args.command in _PICTURES or (args.command == "train" and args.wait)
    async with open_booth(config, dispatch=dispatch) as booth:
        who = Identity(PLATFORM, args.user)
        try:
            handler = _COMMANDS[args.command]
            return await handler(booth, who, args)
        except BoothError as exc:
            print(exc, file=sys.stderr)
            return 1


async def _consent(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    if args.withdraw:
        print(erasure_text(await booth.withdraw_consent(who)))
        return 0
    print(f"Consent text, version {booth.consent_text.version}:\n")
    print(booth.consent_text.text)
    print()
    if args.accept:
        await booth.accept_consent(who)
        print("Accepted. You can now upload selfies: selfiebooth upload PHOTO...")
    else:
        print("To accept: selfiebooth consent --accept")
    return 0


async def _upload(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    limit = booth.config.intake.max_file_bytes
    files = [Upload(path.name, _read_limited(path, limit)) for path in args.paths]
    missing = {i for i, path in enumerate(args.paths) if not path.is_file()}
    with Progress("analysing", unit="photo") as progress:
        present = [f for i, f in enumerate(files) if i not in missing]
        verdicts = await booth.upload(who, present, progress.update)
    results = iter(verdicts)
    all_ok = not missing
    for i, path in enumerate(args.paths):
        shown = shown_name(str(path), limit=None)  # a name must not forge a verdict line
        if i in missing:
            print(f"{shown}: refused: no such file")
            continue
        verdict = next(results)
        all_ok &= verdict.accepted
        print(f"{shown}: accepted" if verdict.accepted else f"{shown}: refused: {verdict.reason}")
    return 0 if all_ok else 1


def _read_limited(path: Path, limit: int) -> bytes:
    """At most limit + 1 bytes: enough for the core to see that a file is too large."""
    if not path.is_file():
        return b""
    with path.open("rb") as fh:
        return fh.read(limit + 1)


async def _status(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    print(format_status(who, await booth.status(who)))
    return 0


async def _forget(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    if not args.yes:
        print("This deletes every photo, model, picture and job of yours. Add --yes to confirm.")
        return 1
    print(erasure_text(await booth.forget(who)))
    return 0


async def _train(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    ticket = await booth.train(who)
    print(f"Training queued as job {ticket.job_id} (position {ticket.position}).")
    if not args.wait:
        print("It runs in a `selfiebooth run` process, or here with --wait.")
        return 0
    if booth.dispatcher is None:
        print(_left_to_worker(booth))
        return 0
    final = await follow(booth, who, ticket.job_id)
    if final.state != "succeeded":
        return 1
    print(f"Model version {final.version} is ready and active.")
    if final.likeness:
        print(final.likeness)
    if final.pictures and args.out is not None:
        print("The validation samples it was measured on:")
        for path in await save_images(final, args.out):
            print(path)
    return 0


async def _imagine(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    request, chosen = _picture_request(args)
    picture = None
    if args.image is not None:
        picture = await _read(args.image, "--image")
    elif args.edges_from is not None:
        picture = await _read(args.edges_from, "--edges-from")
        chosen.add("edges")
    request = dataclasses.replace(request, count=args.count)
    ticket = await booth.imagine(who, request, picture, chosen=chosen)
    return await _wait_for_pictures(booth, who, ticket.job_id, args.out)


async def _edit(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    request, chosen = _picture_request(args)
    picture = await _read(args.image, "--image")
    mask = None if args.mask is None else await _read(args.mask, "--mask")
    ticket = await booth.edit(who, request, picture, region=args.region, mask=mask, chosen=chosen)
    return await _wait_for_pictures(booth, who, ticket.job_id, args.out)


async def _upscale(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    ticket = await booth.upscale(who, args.job, args.index)
    return await _wait_for_pictures(booth, who, ticket.job_id, args.out)


def _picture_request(args: argparse.Namespace) -> tuple[ImagineRequest, set[str]]:
    """The request the shared picture options make, and the fields the user set."""
    request = ImagineRequest(
        args.prompt,
        negative=args.negative,
        seed=args.seed,
        steps=STEPS.default if args.steps is None else args.steps,
        guidance=GUIDANCE.default if args.guidance is None else args.guidance,
        aspect_ratio=args.aspect or DEFAULT_ASPECT,
        styles=parse_styles(" ".join(args.style)),
        strength=STRENGTH.default if args.strength is None else args.strength,
    )
    given = {"aspect_ratio": args.aspect, "strength": args.strength}
    given |= {"steps": args.steps, "guidance": args.guidance}
    return request, {name for name, value in given.items() if value is not None}


async def _read(path: Path, option: str) -> bytes:
    try:
        return await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise BoothError(f"Cannot read {option} {path}: {exc.strerror}.") from None


async def _wait_for_pictures(booth: Booth, who: Identity, job_id: int, out: Path) -> int:
    if booth.dispatcher is None:
        print(f"Job {job_id} is queued. {_left_to_worker(booth)}")
        return 0
    final = await follow(booth, who, job_id)
    if final.state != "succeeded":
        return 1
    for path in await save_images(final, out):
        print(path)
    if final.withheld:
        print(f"{final.withheld} picture(s) were withheld by the safety filter.", file=sys.stderr)
    return 0


def _left_to_worker(booth: Booth) -> str:
    """Where a job goes when another process works this data directory's queue."""
    return (
        f"`selfiebooth run` (process {booth.queue_worker}) works this queue and makes it; "
        "`selfiebooth status` shows when it is done."
    )


async def _cancel(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    cancelled = await booth.cancel(who, args.job)
    print(
        f"Cancelled job(s): {', '.join(map(str, cancelled))}" if cancelled else "Nothing to cancel."
    )
    return 0


async def _use_model(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    lora = await booth.use_model(who, args.version)
    print(f"Model version {lora.version} is now active.")
    return 0


async def _export(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    export = await booth.export(who, args.format)
    await asyncio.to_thread(args.out.mkdir, parents=True, exist_ok=True)
    path = args.out / export.filename
    await asyncio.to_thread(path.write_bytes, export.data)
    print(f"{path} (model version {export.version}; trigger word {export.trigger_word!r})")
    print(export_caption(export))
    return 0


async def _report(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    item = await booth.report(who, args.job, args.note)
    print(f"Thank you: job {args.job} is in the admins' review queue (item {item}).")
    return 0


async def _work_queue(config: Config, config_file: Path | None = None) -> int:
    """Work the queue, and serve the chats whose tokens are in the environment."""
    async with open_booth(config, dispatch=True) as booth:
        if booth.dispatcher is None:
            print(
                f"selfiebooth: process {booth.queue_worker} works the queue of "
                f"{config.data_dir} already: stop it first, or use another data directory",
                file=sys.stderr,
            )
            return 2
        following = None
        if config_file is not None:
            following = asyncio.create_task(_follow_admins(booth, config_file, config))
        front_ends: dict[str, FrontEnd] = {}
        if config.telegram_token is not None:
            from bot.telegram import TelegramFrontEnd

            front_ends["telegram"] = TelegramFrontEnd(booth, config, config.telegram_token)
        if config.discord_token is not None:
            from bot.discord import DiscordFrontEnd

            front_ends["discord"] = DiscordFrontEnd(booth, config, config.discord_token)
        started: list[FrontEnd] = []
        servers: list[HttpServer] = []
        try:
            for server in http_servers(booth, front_ends, config):
                await server.start()
                servers.append(server)
            for front_end in front_ends.values():
                await front_end.start()
                started.append(front_end)
            serving = ", ".join(type(f).__name__.removesuffix("FrontEnd") for f in started)
            # A log record, not a print: a JSON log stays one object per line.
            _log.info(
                "Working the job queue in %s%s; Ctrl-C or SIGTERM stops.",
                config.data_dir,
                f" and serving {serving}" if serving else " (no chat tokens set)",
            )
            await _until_stopped()
        finally:
            for front_end in reversed(started):
                await front_end.stop()
            for server in servers:
                await server.stop()
            if following is not None:
                following.cancel()
    return 0


async def _follow_admins(booth: Booth, config_file: Path, config: Config) -> None:
    """The admin lists read again whenever the config file changes, so that removing an
    admin there locks them out of the chats' admin commands and the web console at
    once, without a restart. A file that does not read as a config changes nothing."""
    seen = None
    while True:
        try:
            stamp = (await asyncio.to_thread(config_file.stat)).st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp != seen:
            if seen is not None:
                try:
                    fresh = load_config(config_file, data_dir=config.data_dir)
                except ConfigError as exc:
                    _log.warning("the config file changed but is not read: %s", exc)
                else:
                    if booth.admin.authorization.follow(fresh):
                        _log.info("the admin lists changed in %s: now in force", config_file)
            seen = stamp
        await asyncio.sleep(_FOLLOW_INTERVAL)


async def _until_stopped() -> None:
    """Until Ctrl-C or SIGTERM (systemd, Docker): the caller then stops everything in
    order, and a running job goes back to the queue. Handlers of our own, as an inherited
    "ignore SIGINT" (a shell's background job) would otherwise leave no way but SIGKILL."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _log.info("Stopping: the chats, then the engine; a running job resumes at the next start.")


class FrontEnd(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    @property
    def connected(self) -> bool: ...


async def _retrain_filter(booth: Booth, operator: Identity, args: list[str]) -> int:
    """Export the review queue's decisions and retrain the prompt classifier with them
    (needs the `train` extra: SciPy); the filter loads the new model on its next reload."""
    parser = argparse.ArgumentParser(prog="selfiebooth admin retrain-filter")
    configured = booth.config.moderation.classifier_file
    parser.add_argument(
        "--out", type=Path, default=Path(configured) if configured else None,
        help="model file to write (moderation.classifier_file)",
    )  # fmt: skip
    parsed = parser.parse_args(args)
    if parsed.out is None:
        print(
            "Set moderation.classifier_file to this deployment's classifier file (the "
            f"packaged one, {MODEL_PATH}, is not overwritten), or give --out FILE.",
            file=sys.stderr,
        )
        return 2
    decided = await booth.admin.review_decisions(operator)
    with tempfile.TemporaryDirectory() as folder:
        extra = Path(folder) / "review-decisions.tsv"
        lines = [f"{label}\tund\tplain\t{text.replace(chr(9), ' ')}\n" for label, text in decided]
        await asyncio.to_thread(extra.write_text, "".join(lines), encoding="utf-8")
        command = [sys.executable, "-m", "engine.safety.train", "--extra", str(extra)]
        process = await asyncio.create_subprocess_exec(*command, "--out", str(parsed.out))
        code = await process.wait()
    await booth.repo.audit(
        f"{operator.platform}:{operator.user_id}",
        "admin.retrain-filter",
        {"decisions": len(decided), "exit": code},
    )
    print(f"{len(decided)} review decision(s) added to the training corpus.")
    return code


async def _admin(config: Config, words: list[str]) -> int:
    """The admin console as the local operator, who may do everything."""
    operator = Identity(PLATFORM, "operator")
    async with open_booth(config) as booth:
        try:
            if words[:1] == ["check-prompt"]:
                # The words are read as the chats read /imagine: `--no`, `--style`, ...
                verdict = await booth.admin.check_prompt(operator, " ".join(words[1:]))
                print(verdict)
                return 0 if verdict == "allowed" else 1
            if words[:1] == ["retrain-filter"]:
                return await _retrain_filter(booth, operator, words[1:])
            if words[:1] == ["trace"]:
                if len(words) != 2:
                    print("usage: selfiebooth admin trace IMAGE_FILE", file=sys.stderr)
                    return 2
                try:
                    image = await asyncio.to_thread(Path(words[1]).read_bytes)
                except OSError as exc:
                    print(f"cannot read {words[1]}: {exc.strerror}", file=sys.stderr)
                    return 2
                print(await booth.admin.trace(operator, image))
                return 0
            print(await booth.admin.run(operator, shlex.join(words), local_files=True))
            return 0
        except BoothError as exc:
            print(exc, file=sys.stderr)
            return 1


# The commands that queue a picture job and run the queue until it is done.
_PICTURES = ("imagine", "edit", "upscale")

_COMMANDS = {
    "consent": _consent,
    "upload": _upload,
    "status": _status,
    "forget": _forget,
    "train": _train,
    "imagine": _imagine,
    "edit": _edit,
    "upscale": _upscale,
    "cancel": _cancel,
    "use-model": _use_model,
    "export": _export,
    "report": _report,
}
