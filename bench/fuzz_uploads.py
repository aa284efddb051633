"""The long fuzz run of uploads, and the memory of the heaviest files within the limits.

Hostile files from the seeded generator (tests/hostile.py) go through the real
`python -m bot.cli upload`, in batches, as a person would send them; every batch is
checked as in CI (tests/fuzz_cli.py: one verdict per file, no traceback, nothing stored
for a refused file), and after the last one `forget` must leave nothing behind. Then the
heaviest files the documented limits allow are uploaded one per call. Printed: files
tried, verdicts, tracebacks, the slowest call, and the peak RSS of every call against the
1.5 GB budget. Exit status 1 if any rule or the budget is broken.

Usage: python bench/fuzz_uploads.py [--seed N] [--files N] [--batch N] [--faces DIR]
(about 430 files take 3 to 5 minutes on two cores.)
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_REPO = Path(__file__).resolve().parents[1]
# Run as `python bench/fuzz_uploads.py`: bench/ comes first on sys.path and its engine.py
# would hide the `engine` package; the generator and the runner live with the tests.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path[:0] = [str(_REPO), str(_REPO / "tests")]

from fuzz_cli import USER, check_batch, cli, stored, upload_batch  # noqa: E402
from helpers_images import faces_dir, people_photos  # noqa: E402
from hostile import HostileFile, hostile_files, long_jpeg, tall_png  # noqa: E402

BUDGET = 1_500_000_000  # bytes of peak RSS per upload call (README, "What a selfie has to be")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--files", type=int, default=430)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--faces", type=Path, default=faces_dir())
    args = parser.parse_args()

    selfies = [_small(p) for p in people_photos(args.faces)]
    if not selfies:
        print(f"no photos under {args.faces}/people", file=sys.stderr)
        return 2
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fuzz-uploads-") as tmp:
        root = Path(tmp)
        data = root / "data"
        assert cli(data, "consent", "--accept", "--user", USER)[0] == 0
        verdicts: collections.Counter[str] = collections.Counter()
        tracebacks = 0
        slowest = (0.0, 0)
        peak = 0
        files = list(hostile_files(args.seed, args.files, selfies))
        for n in range(0, len(files), args.batch):
            batch = files[n : n + args.batch]
            before = stored(data)
            result = upload_batch(data, root / f"b{n}", batch)
            tracebacks += (result.stdout + result.stderr).count("Traceback")
            try:
                for verdict in check_batch(result, before, stored(data)):
                    verdicts[_category(verdict)] += 1
            except AssertionError as exc:
                failures.append(f"seed {args.seed}, files {n}..{n + len(batch) - 1}: {exc}")
            slowest = max(slowest, (result.seconds, len(batch)))
            peak = max(peak, result.peak_rss)
            print(
                f"  files {n:4d}-{n + len(batch) - 1:4d}: {result.seconds:5.1f} s, "
                f"peak RSS {result.peak_rss / 1e6:6.0f} MB",
                flush=True,
            )
        gone = cli(data, "forget", "--yes", "--user", USER)
        left = stored(data)
        if gone[0] != 0 or left != (0, 0):
            failures.append(f"forget left {left} (rows, files): {gone[1]} {gone[2]}")
        assert cli(data, "consent", "--accept", "--user", USER)[0] == 0

        print(f"\nfuzz run, seed {args.seed}, batches of {args.batch}")
        print(f"  files tried:   {len(files)}")
        print(f"  verdicts:      {sum(verdicts.values())}")
        for reason, count in verdicts.most_common():
            print(f"    {count:4d}  {reason}")
        print(f"  tracebacks:    {tracebacks}")
        print(f"  slowest call:  {slowest[0]:.1f} s ({slowest[1]} files, process start included)")
        print(f"  peak RSS:      {peak / 1e6:.0f} MB of one call (budget {BUDGET / 1e6:.0f} MB)")
        if tracebacks or peak >= BUDGET:
            failures.append(f"{tracebacks} traceback(s), peak RSS {peak / 1e6:.0f} MB")

        print("\nheaviest files within the limits, one per call")
        wide = root / "wide.toml"
        wide.write_text("[intake]\nmax_aspect_ratio = 20.0\n", encoding="utf-8")
        for label, item, config in _heavy(wide):
            result = upload_batch(data, root / "heavy" / label, [item], config=config)
            try:
                (verdict,) = check_batch(result, stored(data), stored(data))
            except (AssertionError, ValueError) as exc:
                failures.append(f"{label}: {exc}")
                verdict = "?"
            within = result.peak_rss < BUDGET
            if not within:
                failures.append(f"{label}: peak RSS {result.peak_rss / 1e6:.0f} MB")
            print(
                f"  {label:38s} {len(item.data) / 1e6:5.1f} MB file  {result.seconds:5.1f} s  "
                f"peak RSS {result.peak_rss / 1e6:5.0f} MB {'ok' if within else 'OVER'}  "
                f"-> {verdict[:60]}"
            )
    for failure in failures:
        print(f"FAILED: {failure[:2000]}", file=sys.stderr)
    return 1 if failures else 0


def _small(path: Path) -> bytes:
    with Image.open(path) as img:
        img = img.convert("RGB")
    img.thumbnail((800, 800))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def _category(verdict: str) -> str:
    """A verdict without the numbers in it, so that like counts with like."""
    if verdict == "accepted":
        return verdict
    reason = verdict.removeprefix("refused: ")
    return reason.split(" (")[0].split(":")[0]


def _texture(width: int, height: int, mode: str) -> Image.Image:
    """A smooth picture with some grain: compresses to well under 20 MB at 40 MP."""
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    grey = (127 + 60 * np.sin(x / 37.0) * np.cos(y / 53.0)).astype(np.uint8)
    img = Image.merge(
        "RGB", [Image.fromarray(grey), Image.fromarray(grey[::-1]), Image.fromarray(grey)]
    )
    return img.convert(mode)


def _heavy(wide: Path) -> list[tuple[str, HostileFile, Path | None]]:
    def saved(img: Image.Image, fmt: str, **params: object) -> bytes:
        out = io.BytesIO()
        img.save(out, fmt, **params)
        return out.getvalue()

    square = _texture(6324, 6324, "RGB")  # 39.99 MP
    jpeg = saved(square, "JPEG", quality=80)
    progressive = saved(square, "JPEG", quality=70, progressive=True)
    png = saved(square.convert("RGBA"), "PNG", compress_level=9)
    webp = saved(_texture(7744, 5164, "RGB"), "WEBP", quality=60)
    del square
    out = [
        ("40 MP JPEG 6324 x 6324", HostileFile("big.jpg", jpeg, ""), None),
        ("40 MP progressive JPEG", HostileFile("prog.jpg", progressive, ""), None),
        ("40 MP PNG RGBA 6324 x 6324", HostileFile("big.png", png, ""), None),
        ("40 MP WebP 7744 x 5164", HostileFile("big.webp", webp, ""), None),
        ("1500 x 26666 JPEG (refused by shape)", HostileFile("strip.jpg", long_jpeg(), ""), None),
        ("1500 x 26666 JPEG (shape allowed)", HostileFile("strip.jpg", long_jpeg(), ""), wide),
        ("128 x 312500 PNG (refused by shape)", HostileFile("strip.png", tall_png(), ""), None),
    ]  # fmt: skip
    for label, item, _ in out:
        if len(item.data) >= 20 << 20:
            print(f"  {label}: {len(item.data) / 1e6:.1f} MB, over the file limit; left out")
    return [(label, item, config) for label, item, config in out if len(item.data) < 20 << 20]


if __name__ == "__main__":
    sys.exit(main())
