"""The command line: the first front end of the core, and the admin's shell tool.

    selfiebooth [--config FILE] [--data-dir DIR] COMMAND ...

It only parses arguments, reads files and prints the core's answers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from bot.config import Config, ConfigError, load_config
from bot.core import (
    Booth,
    BoothError,
    Identity,
    ImagineRequest,
    JobOutcome,
    Upload,
    UserStatus,
    open_booth,
)
from bot.core.admin import ADMIN_HELP
from bot.core.summaries import erasure_text
from engine import jobs
from engine.intake.names import shown_name
from engine.limits import ASPECT_RATIOS
from engine.safety.classifier import MODEL_PATH

__all__ = ["main"]

LOCAL_USER = "local"
PLATFORM = "cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfiebooth",
        description="Train a personal image model of your face, with consent, and use it.",
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    parser.add_argument("--data-dir", type=Path, help="where the database and files live")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name not in ("demo", "run"):
            sub.add_argument("--user", default=LOCAL_USER, help="user id (default: %(default)s)")
        return sub

    consent = command("consent", "show the consent text; accept it, or withdraw and erase all")
    choice = consent.add_mutually_exclusive_group()
    choice.add_argument("--accept", action="store_true", help="accept the consent text")
    choice.add_argument(
        "--withdraw", action="store_true", help="withdraw consent: deletes everything about you"
    )

    upload = command("upload", "send selfies; each file gets a verdict")
    upload.add_argument("paths", nargs="+", type=Path, metavar="PATH")

    command("status", "what is stored about you: consent, photos, models, jobs")

    train = command("train", "queue a training of your model on your accepted photos")
    train.add_argument("--wait", action="store_true", help="run it here and print progress")

    imagine = command("imagine", "generate pictures of yourself (runs the queue until done)")
    imagine.add_argument("prompt", metavar="PROMPT")
    seed, steps, count, guidance = jobs.SEED, jobs.STEPS, jobs.COUNT, jobs.GUIDANCE
    imagine.add_argument(
        "--seed", type=int, help=f"{seed.range}: the same seed gives the same picture"
    )
    imagine.add_argument(
        "--steps", type=int, default=steps.default,
        help=f"denoising steps, {steps.range} (%(default)s)",
    )  # fmt: skip
    imagine.add_argument(
        "--count", type=int, default=count.default,
        help=f"images, {count.range} (%(default)s)",
    )  # fmt: skip
    imagine.add_argument("--negative", default="", metavar="TEXT", help="what to avoid")
    imagine.add_argument(
        "--guidance", type=float, default=guidance.default,
        help=f"{guidance.range} (%(default)s)",
    )  # fmt: skip
    imagine.add_argument(
        "--aspect", default=jobs.DEFAULT_ASPECT, metavar="W:H",
        help=f"aspect ratio, one of {', '.join(ASPECT_RATIOS)} (%(default)s)",
    )  # fmt: skip
    imagine.add_argument("--out", type=Path, default=Path("."), help="where to write the PNGs")

    cancel = command("cancel", "cancel your queued and running jobs, or one of them")
    cancel.add_argument("--job", type=int, help="only this job")

    use = command("use-model", "make one of your model versions the active one")
    use.add_argument("version", type=int)

    command("run", "work the job queue and serve the chats whose tokens are set, until Ctrl-C")

    export = command("export", "write your active model (LoRA, safetensors) to a file")
    export.add_argument("--out", type=Path, default=Path("."), help="folder to write it in")

    report = command("report", "report a picture to the admins")
    report.add_argument("job", type=int, metavar="JOB", help="the job that made it")
    report.add_argument("note", nargs="?", default="", help="what is wrong with it")

    admin = commands.add_parser(
        "admin",
        help="moderation tools (admin help lists them)",
        description="moderation tools: the same commands as /admin in the chats",
        epilog=ADMIN_HELP
        + "\n  trace IMAGE_FILE"
        + "\n  retrain-filter [--out FILE]       retrain the prompt classifier with the"
        + "\n                                    review queue's decisions added",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    admin.add_argument("words", nargs=argparse.REMAINDER, metavar="ACTION ...")

    forget = command("forget", "delete every row and file about you")
    forget.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")

    demo = command("demo", "the whole journey on the embedded defaults")
    demo.add_argument("--photos", type=Path, help="a folder of selfies (default: a NASA portrait)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_run(args, config))
    except ConfigError as exc:
        print(f"selfiebooth: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, config: Config) -> int:
    if args.command == "demo":
        from bot.demo import run_demo

        return await run_demo(config, args.photos)
    if args.command == "run":
        return await _work_queue(config)
    if args.command == "admin":
        return await _admin(config, args.words)
    dispatch = args.command == "imagine" or (args.command == "train" and args.wait)
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
    verdicts = await booth.upload(who, [f for i, f in enumerate(files) if i not in missing])
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
    final = await follow(booth, who, ticket.job_id)
    if final.state != "succeeded":
        return 1
    print(f"Model version {final.version} is ready and active.")
    return 0


async def _imagine(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    request = ImagineRequest(
        args.prompt,
        negative=args.negative,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        aspect_ratio=args.aspect,
        count=args.count,
    )
    ticket = await booth.imagine(who, request)
    final = await follow(booth, who, ticket.job_id)
    if final.state != "succeeded":
        return 1
    for path in await save_images(final, args.out):
        print(path)
    if final.withheld:
        print(f"{final.withheld} picture(s) were withheld by the safety filter.", file=sys.stderr)
    return 0


async def save_images(outcome: JobOutcome, out: Path) -> list[Path]:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    job_id = outcome.job_id
    paths = [out / f"selfiebooth-{job_id}-{n}.png" for n in range(1, len(outcome.pictures) + 1)]
    for path, png in zip(paths, outcome.pictures, strict=True):
        await asyncio.to_thread(path.write_bytes, png)
    return paths


async def follow(booth: Booth, who: Identity, job_id: int) -> JobOutcome:
    """Print a job's progress on stderr until it ends; how it ended."""
    async for update in booth.updates(who, job_id):
        if update.outcome is not None:
            if update.outcome.state != "succeeded":
                message = update.outcome.message or ""
                print(f"  {update.outcome.state}: {message}".rstrip(": "), file=sys.stderr)
            return update.outcome
        if update.state == "progress":
            eta = f", about {update.eta:.0f} s left" if update.eta is not None else ""
            loss = f", loss {update.loss:.4f}" if update.loss is not None else ""
            print(f"  step {update.step}/{update.total}{loss}{eta}", file=sys.stderr)
        elif update.state in ("paused", "retrying"):
            print(f"  {update.state}: {update.message or ''}".rstrip(": "), file=sys.stderr)
    return await booth.outcome(who, job_id)


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
    export = await booth.export(who)
    await asyncio.to_thread(args.out.mkdir, parents=True, exist_ok=True)
    path = args.out / export.filename
    await asyncio.to_thread(path.write_bytes, export.data)
    print(f"{path} (model version {export.version}; trigger word {export.trigger_word!r})")
    return 0


async def _report(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    item = await booth.report(who, args.job, args.note)
    print(f"Thank you: job {args.job} is in the admins' review queue (item {item}).")
    return 0


async def _work_queue(config: Config) -> int:
    """Work the queue, and serve the chats whose tokens are in the environment."""
    async with open_booth(config, dispatch=True) as booth:
        front_ends: list[FrontEnd] = []
        if config.telegram_token is not None:
            from bot.telegram import TelegramFrontEnd

            front_ends.append(TelegramFrontEnd(booth, config, config.telegram_token))
        if config.discord_token is not None:
            from bot.discord import DiscordFrontEnd

            front_ends.append(DiscordFrontEnd(booth, config, config.discord_token))
        started: list[FrontEnd] = []
        try:
            for front_end in front_ends:
                await front_end.start()
                started.append(front_end)
            serving = ", ".join(type(f).__name__.removesuffix("FrontEnd") for f in started)
            print(
                f"Working the job queue in {config.data_dir}"
                + (f" and serving {serving}" if serving else " (no chat tokens set)")
                + "; Ctrl-C stops.",
                file=sys.stderr,
            )
            await asyncio.Event().wait()  # until cancelled by Ctrl-C
        finally:
            for front_end in reversed(started):
                await front_end.stop()
    return 0


class FrontEnd(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def _retrain_filter(booth: Booth, operator: Identity, args: list[str]) -> int:
    """Export the review queue's decisions and retrain the prompt classifier with them
    (needs the `train` extra: SciPy); the filter loads the new model on its next reload."""
    parser = argparse.ArgumentParser(prog="selfiebooth admin retrain-filter")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="model file to write")
    parsed = parser.parse_args(args)
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
            print(await booth.admin.run(operator, shlex.join(words)))
            return 0
        except BoothError as exc:
            print(exc, file=sys.stderr)
            return 1


def format_status(who: Identity, status: UserStatus) -> str:
    lines = [f"user: {who.user_id}"]
    if status.consent is None:
        lines.append("consent: not given")
    else:
        current = "current" if status.consent_current else "outdated: accept the new text"
        lines.append(
            f"consent: version {status.consent.version}, accepted {status.consent.accepted_at}"
            f" ({current})"
        )
    lines.append(f"photos: {status.photos} accepted (at most {status.max_photos})")
    if status.loras:
        for lora in status.loras:
            active = " (active)" if lora.active else ""
            lines.append(
                f"model v{lora.version}: {lora.base_model}, trigger {lora.trigger_word}{active}"
            )
    else:
        lines.append("models: none yet")
    if status.jobs:
        for job in status.jobs:
            error = f": {job.error}" if job.error and job.status != "succeeded" else ""
            lines.append(f"job {job.id}: {job.kind} {job.status} {job.progress:.0%}{error}")
    else:
        lines.append("jobs: none")
    return "\n".join(lines)


_COMMANDS = {
    "consent": _consent,
    "upload": _upload,
    "status": _status,
    "forget": _forget,
    "train": _train,
    "imagine": _imagine,
    "cancel": _cancel,
    "use-model": _use_model,
    "export": _export,
    "report": _report,
}

if __name__ == "__main__":
    sys.exit(main())
