"""The command line's arguments: every command with its options and help.

Option ranges and defaults of `imagine` come from the job contract (engine.jobs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.core.admin import ADMIN_HELP
from bot.core.exports import EXPORT_FORMATS
from bot.core.masks import REGIONS
from engine import jobs
from engine.limits import ASPECT_RATIOS

__all__ = ["LOCAL_USER", "PLATFORM", "build_parser"]

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
    train.add_argument(
        "--out", type=Path, metavar="DIR",
        help="with --wait: write the validation samples its likeness was measured on here",
    )  # fmt: skip

    imagine = command("imagine", "generate pictures of yourself (runs the queue until done)")
    imagine.add_argument("prompt", metavar="PROMPT")
    _picture_options(imagine)
    imagine.add_argument(
        "--count", type=int, default=jobs.COUNT.default,
        help=f"images, {jobs.COUNT.range} (%(default)s)",
    )  # fmt: skip
    attached = imagine.add_mutually_exclusive_group()
    attached.add_argument(
        "--image", type=Path, metavar="FILE",
        help="a picture of you (or with no face) to start from: image-to-image",
    )  # fmt: skip
    attached.add_argument(
        "--edges-from", type=Path, metavar="FILE",
        help="a picture of you (or with no face) whose outlines (canny edges) the new "
        "picture follows",
    )  # fmt: skip

    edit = command("edit", "repaint part of a picture of you (runs the queue until done)")
    edit.add_argument("prompt", metavar="PROMPT", help="what the repainted part shows")
    edit.add_argument("--image", type=Path, metavar="FILE", required=True, help="the picture")
    what = edit.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--region", choices=REGIONS,
        help="repaint everything but you (background) or only your face (face)",
    )  # fmt: skip
    what.add_argument(
        "--mask", type=Path, metavar="FILE", help="a mask picture: white where to repaint"
    )
    _picture_options(edit, strength_default=jobs.EDIT_STRENGTH)

    upscale = command("upscale", "one of your pictures twice as large (runs the queue)")
    upscale.add_argument("job", type=int, metavar="JOB", help="the picture job")
    upscale.add_argument("index", type=int, nargs="?", default=1, metavar="N",
                         help="which of its pictures (%(default)s)")  # fmt: skip
    upscale.add_argument("--out", type=Path, default=Path("."), help="where to write the PNG")

    cancel = command("cancel", "cancel your queued and running jobs, or one of them")
    cancel.add_argument("--job", type=int, help="only this job")

    use = command("use-model", "make one of your model versions the active one")
    use.add_argument("version", type=int)

    command("run", "work the job queue and serve the chats whose tokens are set, until Ctrl-C")

    export = command("export", "write your active model (LoRA, safetensors) to a file")
    export.add_argument("--out", type=Path, default=Path("."), help="folder to write it in")
    export.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="kohya",
        help="kohya (AUTOMATIC1111, Forge, ComfyUI) or diffusers (default: kohya)",
    )

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

    doctor = commands.add_parser(
        "doctor",
        help="check this machine and config before running the bot",
        description="check the config, the data directory, the model, CUDA and the tokens "
        "(never showing their values); each finding says what to do",
    )
    doctor.add_argument(
        "--online", action="store_true", help="ask the hub about a model that is not cached"
    )
    doctor.add_argument(
        "--chats", action="store_true", help="ask Telegram and Discord whether they take the tokens"
    )

    worker = commands.add_parser(
        "worker",
        help="join this GPU machine to the bot's Ray cluster ([cluster] address)",
        description="join this machine to a Ray cluster as engine lanes (one per GPU, or"
        " --engines on a machine without one): `ray start --address ADDRESS --block`;"
        " install the same version of selfiebooth with the cluster extra as the bot",
    )
    worker.add_argument("--address", required=True, help="the head's HOST:PORT (ray start)")
    worker.add_argument(
        "--engines", type=int, default=0, metavar="N",
        help="lanes this machine offers without GPUs (the engine resource); default: its GPUs",
    )  # fmt: skip

    demo = command("demo", "the whole journey on the embedded defaults")
    demo.add_argument("--photos", type=Path, help="a folder of selfies (default: a NASA portrait)")
    return parser


def _picture_options(
    sub: argparse.ArgumentParser, strength_default: float = jobs.STRENGTH.default
) -> None:
    """The options every picture command shares, with the contract's ranges."""
    seed, steps, guidance = jobs.SEED, jobs.STEPS, jobs.GUIDANCE
    sub.add_argument("--seed", type=int, help=f"{seed.range}: the same seed gives the same picture")
    sub.add_argument(
        "--steps", type=int, default=None,
        help=f"denoising steps, {steps.range} (the model's default: {steps.default} for SD)",
    )  # fmt: skip
    sub.add_argument("--negative", default="", metavar="TEXT", help="what to avoid")
    sub.add_argument(
        "--guidance", type=float, default=None,
        help=f"{guidance.range} (the model's default: {guidance.default:g} for SD)",
    )  # fmt: skip
    sub.add_argument(
        "--aspect", metavar="W:H",
        help=f"aspect ratio, one of {', '.join(ASPECT_RATIOS)} ({jobs.DEFAULT_ASPECT}; "
        "with a picture, the nearest to the picture's)",
    )  # fmt: skip
    sub.add_argument(
        "--strength", type=float, metavar="S",
        help=f"with a picture to redraw: how much of it is redrawn, {jobs.STRENGTH.range} "
        f"({strength_default:g})",
    )  # fmt: skip
    sub.add_argument(
        "--style", action="append", default=[], metavar="NAME[:W]",
        help=f"a style of the library (admin style list), weight {jobs.STYLE_WEIGHT.range}; "
        f"up to {jobs.MAX_STYLES}",
    )  # fmt: skip
    sub.add_argument("--out", type=Path, default=Path("."), help="where to write the PNGs")
