"""The command line: the first front end of the core, and the admin's shell tool.

    selfiebooth [--config FILE] [--data-dir DIR] COMMAND ...

It only parses arguments, reads files and prints the core's answers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import Config, ConfigError, load_config
from bot.core import Booth, BoothError, Identity, Upload, UserStatus, open_booth

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
        if name != "demo":
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
    level = (
        logging.DEBUG
        if args.verbose
        else max(logging.WARNING, logging.getLevelName(config.log_level))
    )
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
    async with open_booth(config) as booth:
        who = Identity(PLATFORM, args.user)
        try:
            handler = _COMMANDS[args.command]
            return await handler(booth, who, args)
        except BoothError as exc:
            print(exc, file=sys.stderr)
            return 1


async def _consent(booth: Booth, who: Identity, args: argparse.Namespace) -> int:
    if args.withdraw:
        erasure = await booth.withdraw_consent(who)
        print(
            f"Consent withdrawn. Erased {erasure.photos} photo(s), {erasure.loras} model(s), "
            f"{erasure.jobs} job(s) and {erasure.files} file(s)."
        )
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
        if i in missing:
            print(f"{path}: refused: no such file")
            continue
        verdict = next(results)
        all_ok &= verdict.accepted
        print(f"{path}: accepted" if verdict.accepted else f"{path}: refused: {verdict.reason}")
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
    erasure = await booth.forget(who)
    print(
        f"Forgotten. Erased {erasure.photos} photo(s), {erasure.loras} model(s), "
        f"{erasure.jobs} job(s) and {erasure.files} file(s)."
    )
    return 0


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
            lines.append(f"job {job.id}: {job.kind} {job.status} {job.progress:.0%}")
    else:
        lines.append("jobs: none")
    return "\n".join(lines)


_COMMANDS = {"consent": _consent, "upload": _upload, "status": _status, "forget": _forget}

if __name__ == "__main__":
    sys.exit(main())
