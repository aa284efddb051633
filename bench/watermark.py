"""Survival of the invisible watermark (engine.provenance) under JPEG, resizing, cropping,
mirroring and rotation.

Real photos from the shared faces directory (people/*/, multi/, partial/), resized so that
their longer side is 512 and 1024 pixels, stand in for generated images. Each is marked
with a few job ids, attacked, and read back; a read counts only when it gives the job id
that was marked. Printed: the survival rate per attack and size, the PSNR of the mark,
embed and read times, and how many unmarked pictures read as marked.

Attacks: JPEG at quality 75 and 50; the longer side resized to 1280 px (Lanczos) and
halved; a 10% crop, as 5% off each side, as 10% off the right and bottom (one corner
kept) and off the left and top, and a 5%-per-side crop saved as JPEG 75. Geometry: a
mirror, rotations of 2 and 5 degrees (the size kept, black corners), crops keeping 60%
of the area (centred, or at a corner) saved as JPEG 75, and those combined with a resize.

Usage: python bench/watermark.py [--faces DIR] [--ids N] [--sizes 512,1024]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

# Run as `python bench/watermark.py`, this folder comes first on sys.path, and its
# engine.py would hide the `engine` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

from engine.provenance import TARGET_PSNR, embed, read  # noqa: E402

Attack = Callable[[Image.Image], Image.Image]


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def longer_side(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS)


def crop(left: float, top: float, right: float, bottom: float) -> Attack:
    def attack(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop(
            (round(w * left), round(h * top), w - round(w * right), h - round(h * bottom))
        )

    return attack


def mirror(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def turn(degrees: float) -> Attack:
    """Rotated about the centre, the size kept, the corners black."""
    return lambda image: image.rotate(degrees, resample=Image.Resampling.BICUBIC)


def keep_area(share: float, corner: bool = False) -> Attack:
    """A crop keeping `share` of the area: centred, or at the top-right corner."""
    side = share**0.5
    if corner:
        return crop(1 - side, 0.0, 0.0, 1 - side)
    return crop(*[(1 - side) / 2] * 4)


ATTACKS: dict[str, Attack] = {
    "none": lambda image: image,
    "JPEG q75": jpeg,
    "JPEG q50": lambda image: jpeg(image, 50),
    "resize to 1280": lambda image: longer_side(image, 1280),
    "halved": lambda image: longer_side(image, max(image.size) // 2),
    "crop 5% each side": crop(0.05, 0.05, 0.05, 0.05),
    "crop 10% off a corner": crop(0.0, 0.0, 0.10, 0.10),
    "crop 10% off left+top": crop(0.10, 0.10, 0.0, 0.0),
    "crop 5%/side + JPEG": lambda image: jpeg(crop(0.05, 0.05, 0.05, 0.05)(image)),
    # Geometry (issue 15): mirrors, rotations to 5 degrees, crops to 60% of the area.
    "mirror": mirror,
    "mirror + JPEG": lambda image: jpeg(mirror(image)),
    "rotate 2": turn(2),
    "rotate -5": turn(-5),
    "rotate 5 + JPEG": lambda image: jpeg(turn(5)(image)),
    "crop 60% area + JPEG": lambda image: jpeg(keep_area(0.6)(image)),
    "crop 60% corner + JPEG": lambda image: jpeg(keep_area(0.6, corner=True)(image)),
    "mirror+rot 3+crop 60%+JPEG": lambda image: jpeg(keep_area(0.6)(turn(3)(mirror(image)))),
    "rot -4 + resize + JPEG": lambda image: jpeg(longer_side(turn(-4)(image), 800)),
    "crop 60% + halved + JPEG": lambda image: jpeg(
        longer_side(keep_area(0.6)(image), max(image.size) // 2)
    ),
}
REQUIRED = (
    "JPEG q75",
    "resize to 1280",
    "crop 5% each side",
    "crop 10% off a corner",
    "mirror",
    "rotate 2",
    "rotate -5",
    "rotate 5 + JPEG",
    "crop 60% area + JPEG",
    "crop 60% corner + JPEG",
    "mirror+rot 3+crop 60%+JPEG",
    "rot -4 + resize + JPEG",
    "crop 60% + halved + JPEG",
)


def photos_in(root: Path) -> list[Path]:
    return sorted(
        [*root.glob("people/*/*.jpg"), *root.glob("multi/*.jpg"), *root.glob("partial/*.jpg")]
    )


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(10 * np.log10(255**2 / np.mean(diff**2)))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main(argv: list[str] | None = None) -> int:
    default_faces = os.environ.get(
        "SELFIEBOOTH_FACES_DIR", str(Path(__file__).resolve().parents[1].parent / "shared/faces")
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(default_faces), help="faces directory")
    parser.add_argument("--ids", type=int, default=3, help="job ids marked per picture")
    parser.add_argument("--sizes", default="512,1024", help="longer sides to test, in pixels")
    args = parser.parse_args(argv)

    photos = photos_in(args.faces)
    if not photos:
        print(f"no photos under {args.faces} (people/*/*.jpg, multi/*.jpg, partial/*.jpg)")
        return 1
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    job_ids = [2**32 - 1, *(int(j) for j in rng.integers(1, 2**32, args.ids - 1))][: args.ids]

    survived: dict[tuple[str, int], list[bool]] = {(a, s): [] for a in ATTACKS for s in sizes}
    psnrs: dict[int, list[float]] = {s: [] for s in sizes}
    embed_s: dict[int, list[float]] = {s: [] for s in sizes}
    read_s: dict[int, list[float]] = {s: [] for s in sizes}
    unmarked_s: dict[int, list[float]] = {s: [] for s in sizes}
    false_reads = unmarked_reads = 0
    for path in photos:
        with Image.open(path) as source:
            photo = source.convert("RGB")
        for size in sizes:
            picture = longer_side(photo, size)
            for attack in ATTACKS.values():  # nothing read from a picture never marked
                attacked = attack(picture)
                start = time.perf_counter()
                false_reads += read(attacked) is not None
                unmarked_s[size].append(time.perf_counter() - start)
                unmarked_reads += 1
            for job_id in job_ids:
                start = time.perf_counter()
                marked = embed(picture, job_id)
                embed_s[size].append(time.perf_counter() - start)
                psnrs[size].append(psnr(picture, marked))
                for name, attack in ATTACKS.items():
                    attacked = attack(marked)
                    start = time.perf_counter()
                    found = read(attacked)
                    read_s[size].append(time.perf_counter() - start)
                    survived[name, size].append(found == job_id)

    print(f"faces dir: {args.faces}")
    print(
        f"pictures: {len(photos)} photos x sizes {', '.join(map(str, sizes))} px "
        f"x {len(job_ids)} job ids; target PSNR {TARGET_PSNR:g} dB"
    )
    print()
    print(f"{'survival':<24}" + "".join(f"{f'{s} px':>16}" for s in sizes) + f"{'all':>16}")
    for name in ATTACKS:
        cells = []
        for size in sizes:
            hits = survived[name, size]
            cells.append(f"{sum(hits):>4}/{len(hits):<4} {sum(hits) / len(hits):6.1%}")
        both = [hit for size in sizes for hit in survived[name, size]]
        cells.append(f"{sum(both):>4}/{len(both):<4} {sum(both) / len(both):6.1%}")
        mark = "*" if name in REQUIRED else " "
        print(f"{mark} {name:<22}" + "".join(f"{c:>16}" for c in cells))
    print("  (* the attacks asked for)")
    print()
    print("PSNR of the mark (dB)")
    for size in sizes:
        values = psnrs[size]
        print(
            f"  {size:>5} px   min {min(values):5.1f}   mean {statistics.mean(values):5.1f}"
            f"   max {max(values):5.1f}"
        )
    print()
    print("time per picture")
    for size in sizes:
        print(
            f"  {size:>5} px   embed {ms(statistics.mean(embed_s[size]))}"
            f"   read {ms(statistics.mean(read_s[size]))}"
            f"   (median {ms(statistics.median(read_s[size]))})"
            f"   unmarked read {ms(statistics.mean(unmarked_s[size]))}"
            f" (max {ms(max(unmarked_s[size]))})"
        )
    print()
    print(f"false reads: {false_reads} of {unmarked_reads} unmarked pictures (all attacks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
