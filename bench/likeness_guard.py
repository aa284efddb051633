"""The likeness guard on real photos: how often it withholds and passes, and how fast it is.

Every person in people/*/ of the shared faces directory is enrolled as a user the way
intake stores them (`analyze_photo`'s descriptor of each photo). Then each photo is
screened, as a generated picture is (`face_descriptors` at the detection size, then
`FaceIndex.match`), as the output of a job of every user in turn:

* B withheld: a photo of person B in the job of another user A (B a user): withheld?
* A passed:   a photo of person A in A's own job: passed?
* unknown passed: person P left out of the users, P's photo in the job of every user: passed?

"enrolled with the same photos" is the literal case (B's photos, given as A's output, after
B uploaded them); "held out" leaves the screened photo out of its person's enrolment, like
a new picture of B that B never uploaded. multi/ (two known people in one photo) and
partial/ are screened as the output of users who are not in them.

Time per picture: detection + descriptors + match, on one CPU thread, at the size a photo
arrives (scaled down to the detection size, 1024 px) and at 512 px (what SD 1.5 draws).
Match alone: 1k, 10k and 100k synthetic users (random unit descriptors).

Usage: python bench/likeness_guard.py [--faces DIR] [--users 1000,10000,100000]
"""

from __future__ import annotations

import os

# One thread for BLAS, as the bot's event loop would see on a busy machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

# Run as `python bench/likeness_guard.py`, this folder comes first on sys.path, and its
# engine.py would hide the `engine` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

from engine.intake import FaceAnalyzer, IntakeSettings, PhotoRefused, analyze_photo  # noqa: E402
from engine.safety.likeness import FaceIndex, face_descriptors  # noqa: E402

Photo = tuple[str, Path]  # (person, path)


def enrol(
    index: FaceIndex, ids: dict[str, int], stored: dict[Path, np.ndarray], skip: set[Path]
) -> None:
    """Every photo intake stored for the people in `ids`, but those in `skip`."""
    for path, descriptor in stored.items():
        person = path.parent.name
        if person in ids and path not in skip:
            index.add(ids[person], descriptor)


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / total:5.1f}%" if total else "n/a"


def ms(values: list[float]) -> str:
    mean, median = 1000 * statistics.mean(values), 1000 * statistics.median(values)
    return f"mean {mean:7.2f} ms, median {median:7.2f} ms"


def main(argv: list[str] | None = None) -> int:
    default_faces = os.environ.get(
        "SELFIEBOOTH_FACES_DIR", str(Path(__file__).resolve().parents[1].parent / "shared/faces")
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(default_faces), help="faces directory")
    parser.add_argument("--users", default="1000,10000,100000", help="synthetic index sizes")
    args = parser.parse_args(argv)

    photos = sorted(args.faces.glob("people/*/*.jpg"))
    if not photos:
        print(f"no photos under {args.faces}/people/*/*.jpg")
        return 1
    settings = IntakeSettings()
    analyzer = FaceAnalyzer()
    people = sorted({p.parent.name for p in photos})
    ids = {name: n for n, name in enumerate(people, start=1)}

    # What intake stores for each photo (refused photos are not stored, so not enrolled).
    stored: dict[Path, np.ndarray] = {}
    for path in photos:
        try:
            stored[path] = analyze_photo(path.read_bytes(), settings, 512, analyzer).descriptor
        except PhotoRefused as refusal:
            print(f"not enrolled: {path.relative_to(args.faces)} ({refusal.reason})")

    # What the guard sees in each picture, timed: detection + descriptors (+ match below).
    seen: dict[Path, np.ndarray] = {}
    timings: dict[str, list[float]] = {"as sent (<= 1024 px)": [], "512 px": []}
    extra = sorted(args.faces.glob("multi/*.jpg")) + sorted(args.faces.glob("partial/*.jpg"))
    for path in photos + extra:
        image = Image.open(path).convert("RGB")
        small = image.copy()
        small.thumbnail((512, 512))
        for label, picture in (("as sent (<= 1024 px)", image), ("512 px", small)):
            start = time.perf_counter()
            found = face_descriptors(picture, analyzer, settings.detection_max_side)
            timings[label].append(time.perf_counter() - start)
            if label.startswith("as sent"):
                seen[path] = found

    def withheld(index: FaceIndex, path: Path, requester: int) -> tuple[bool, float]:
        start = time.perf_counter()
        hit = any(index.match(d, requester) is not None for d in seen[path])
        return hit, time.perf_counter() - start

    match_times: list[float] = []
    print(f"faces dir: {args.faces}; {len(people)} people, {len(photos)} photos")
    print(f"identity threshold {settings.identity_threshold}; a user = the mean of their photos")
    for mode in ("enrolled with the same photos", "held out"):
        b_hits = b_total = a_hits = a_total = u_hits = u_total = 0
        closest_other, farthest_own = 9.0, 0.0
        for path in photos:
            person = path.parent.name
            index = FaceIndex(settings.identity_threshold)
            enrol(index, ids, stored, {path} if mode == "held out" else set())
            for requester_name, requester in ids.items():
                hit, seconds = withheld(index, path, requester)
                match_times.append(seconds)
                if requester_name == person:
                    a_total += 1
                    a_hits += not hit
                else:
                    b_total += 1
                    b_hits += hit
            # The same photo when its person is nobody known.
            unknown = FaceIndex(settings.identity_threshold)
            enrol(unknown, {k: v for k, v in ids.items() if k != person}, stored, set())
            for requester_name, requester in ids.items():
                if requester_name != person:
                    u_total += 1
                    u_hits += not withheld(unknown, path, requester)[0]
            for d in seen[path]:
                for name in ids:
                    rows = [
                        stored[p]
                        for p in stored
                        if p.parent.name == name and (mode != "held out" or p != path)
                    ]
                    dist = float(np.linalg.norm(d - np.mean(rows, axis=0)))
                    if name == person:
                        farthest_own = max(farthest_own, dist)
                    else:
                        closest_other = min(closest_other, dist)
        print()
        print(f"{mode}:")
        print(f"  B withheld      {rate(b_hits, b_total)}   (photo of B in another user's job)")
        print(f"  A passed        {rate(a_hits, a_total)}   (photo of A in A's own job)")
        print(f"  unknown passed  {rate(u_hits, u_total)}   (photo of a non-user in any job)")
        print(
            f"  distances: to one's own mean at most {farthest_own:.3f},"
            f" to other users' at least {closest_other:.3f}"
        )

    index = FaceIndex(settings.identity_threshold)
    enrol(index, ids, stored, set())
    print()
    print("multi/ and partial/, everybody a user: whose faces they show, and in whose jobs")
    print("they are withheld")
    names = {i: name for name, i in ids.items()}
    for path in extra:
        shown = sorted({names[m.user_id] for d in seen[path] if (m := index.match(d, None))})
        jobs = sorted(name for name, i in ids.items() if withheld(index, path, i)[0])
        print(f"  {path.relative_to(args.faces)}: {len(seen[path])} face(s)")
        print(f"    shows {', '.join(shown) or 'nobody known'}; withheld for {', '.join(jobs)}")

    print()
    print("time per picture (dlib detection + descriptors of every face + match):")
    match_mean = statistics.mean(match_times)
    for label, values in timings.items():
        print(f"  {label:<22} {ms([v + match_mean for v in values])}")
    print(f"  of which match ({len(people)} users): {1e6 * match_mean:.1f} us")

    print()
    print("match alone, numpy brute force over random unit descriptors (one thread):")
    rng = np.random.default_rng(0)
    for n in (int(x) for x in args.users.split(",")):
        big = FaceIndex(settings.identity_threshold, capacity=n)
        vectors = rng.normal(size=(n, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for user, v in enumerate(vectors):
            big.add(user, v)
        queries = rng.normal(size=(200, 128)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        queries[:100] = vectors[:100] + 0.01  # half of them somebody's face
        times = []
        for n_query, q in enumerate(queries):
            start = time.perf_counter()
            big.match(q, requester=n_query + 1)
            times.append(time.perf_counter() - start)
        memory = n * 128 * 4 / 2**20
        print(f"  {n:>7} users: {ms(times)}  (means matrix {memory:6.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
