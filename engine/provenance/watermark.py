"""An invisible watermark that carries a job id and survives JPEG, resizing and cropping.

Where the mark lives: the luminance, resized so that its longer side is 512 pixels (a
size-normalised domain, so a resized copy reads the same), then the LL band of a one-level
Haar DWT (256 pixels on the longer side). The band is cut into 64x64 tiles that all carry
the same mark: a set of mid-frequency coefficients of the tiles' DFT (16 to 31 cycles per
tile), the "chips".

Why tiles and the DFT rather than block DCTs: a crop moves the picture against any grid.
For a tile that repeats, that move is a cyclic shift, and one FFT cross-correlation with a
known pilot finds it for every shift at once; a crop also shrinks the longer side and so
changes the scale of the normalised domain, which the reader finds by trying scales. Block
DCT marks have to try every block offset and block order instead, and each try is one more
chance for a false read.

The chips: 200 complex DFT coefficients are a pilot with known signs for that search; the
others carry the payload (ecc: the 32-bit job id, a 24-bit check, convolutionally coded),
each coded bit spread over about 15 chips in every tile.

Why informed embedding: the picture's own content at those frequencies is the biggest
noise the reader faces. The embedder knows it, so each chip gets the mark less half of what
the picture already puts there (improved spread spectrum), within a PSNR budget. Pixels
clipped at black or white lose their share of the mark; two passes make up for it.

A read needs the pilot to stand out and the check to hold, so an unmarked picture reads
None; images below 256 pixels on their longer side carry no mark.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from engine.provenance import ecc

__all__ = ["MIN_SIDE", "TARGET_PSNR", "WatermarkReading", "embed", "inspect", "read", "read_job_id"]

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.intp]

MIN_SIDE = 256  # pixels on the longer side: a smaller image holds too few tiles
TARGET_PSNR = 42.0  # dB: the strength is chosen per image to spend about this much
_CANON = 512  # longer side of the size-normalised luminance
_TILE = 64  # tile side in the LL band: 4 tiles along the longer side
_BAND = (16.0, 31.0)  # radius of the chips' DFT bins, in cycles per tile
_PILOT_BINS = 200
_KEY = 0x5E1F1E  # seeds the layout and the check: another key is another, unreadable mark
_LUMA = np.array([0.299, 0.587, 0.114])
_HOST_REJECTION = 0.5  # share of the picture's own chip value taken out (ISS lambda)
_CLIP_ROUNDS = 2
_CROP_SCALES = np.arange(1.0, 1.2501, 0.005)  # crops of up to 20% of the longer side
_FINE_STEPS = np.arange(-0.006, 0.0061, 0.001)  # around a promising scale
_MIN_Z = 4.5  # pilot peak over the other alignments, in standard deviations
_CANDIDATES = 3  # promising scales searched finely before giving up...
_DECODES = 6  # ...and how many of the best fine alignments of each are decoded
_RINGS = 6  # frequency rings, each weighted by its own noise when decoding


@dataclass(frozen=True, slots=True)
class WatermarkReading:
    """What the reader found: the job id (None without a valid mark) and how sure it was."""

    job_id: int | None
    z: float  # pilot peak over the other alignments, in standard deviations
    scale: float  # the marked image's longer side over this one's (1.0: not cropped)
    shift: tuple[float, float]  # the tile origin found, in LL pixels (x, y)


# layout ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layout:
    bins: IntArray  # (n, 2) DFT bins (row, column): one of each conjugate pair
    pilot: FloatArray  # signs of the pilot chips (real parts, then imaginary parts)
    key: FloatArray  # sign of each payload chip
    bit_of_chip: IntArray  # the coded bit each payload chip carries
    ring: IntArray  # the frequency ring of each payload chip


@functools.cache
def _layout() -> _Layout:
    half = _TILE // 2
    lo, hi = _BAND
    bins = [
        (row % _TILE, col)
        for row in range(-half + 1, half)
        for col in range(half)
        if (col > 0 or row > 0) and lo <= math.hypot(row, col) <= hi
    ]
    rng = np.random.default_rng(_KEY)
    chosen = np.array(bins, dtype=np.intp)[rng.permutation(len(bins))]
    payload_bins = len(chosen) - _PILOT_BINS
    radius = np.hypot(_signed(chosen[_PILOT_BINS:, 0]), chosen[_PILOT_BINS:, 1])
    ring = np.minimum(((radius - lo) / (hi - lo) * _RINGS).astype(np.intp), _RINGS - 1)
    return _Layout(
        bins=chosen,
        pilot=rng.choice([-1.0, 1.0], size=2 * _PILOT_BINS),
        key=rng.choice([-1.0, 1.0], size=2 * payload_bins),
        bit_of_chip=rng.permutation(np.arange(2 * payload_bins) % ecc.CODED_BITS),
        ring=np.concatenate([ring, ring]),
    )


def _signed(rows: IntArray) -> IntArray:
    """DFT row indices as frequencies: the upper half is negative."""
    out: IntArray = np.where(rows >= _TILE // 2, rows - _TILE, rows)
    return out


def _chip_signs(job_id: int) -> FloatArray:
    """The sign every chip should have: the pilot's, then the payload's (real, imaginary)."""
    lay = _layout()
    payload = lay.key * ecc.encode(job_id, _KEY)[lay.bit_of_chip]
    p, m = _PILOT_BINS, payload.size // 2
    return np.concatenate([lay.pilot[:p], payload[:m], lay.pilot[p:], payload[m:]])


# the normalised domain ---------------------------------------------------------------


def _resize(values: FloatArray, size: tuple[int, int]) -> FloatArray:
    """`values` resized to (width, height); Pillow's bicubic filter antialiases shrinking."""
    if (values.shape[1], values.shape[0]) == size:
        return values
    img = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)


def _band_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the LL band of an image of `size`: half the normalised size."""
    scale = _CANON / 2 / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _band(luma: FloatArray) -> FloatArray:
    """The high-passed Haar LL band of the size-normalised `luma`, in pixel units."""
    import pywt

    width, height = _band_size((luma.shape[1], luma.shape[0]))
    # Exactly twice the band, so that the band's pixel grid is the one `_mark` draws on.
    canon = _resize(luma, (2 * width, 2 * height))
    low, _ = pywt.dwt2(canon, "haar")
    return _highpass(np.asarray(low, dtype=np.float64) / 2.0)  # Haar LL is 2x the mean


_BLUR = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
_BLUR /= _BLUR.sum()


def _highpass(band: FloatArray) -> FloatArray:
    """`band` less a Gaussian blur of it. The picture's broad shapes, and the step they
    make where a folded tile wraps around, would otherwise drown the chips after a crop."""
    pad = len(_BLUR) // 2
    padded = np.pad(band, pad, mode="reflect")
    h, w = band.shape
    rows = sum(k * padded[:, i : i + w] for i, k in enumerate(_BLUR))
    blurred = sum(k * rows[i : i + h, :] for i, k in enumerate(_BLUR))
    out: FloatArray = band - blurred
    return out


def _fold(band: FloatArray) -> FloatArray:
    """The mean tile: every pixel averaged into its place modulo the tile size."""
    h, w = band.shape
    rows, cols = -(-h // _TILE), -(-w // _TILE)
    total = np.zeros((rows * _TILE, cols * _TILE))
    seen = np.zeros_like(total)
    total[:h, :w] = band
    seen[:h, :w] = 1.0
    sums = total.reshape(rows, _TILE, cols, _TILE).sum(axis=(0, 2))
    counts = seen.reshape(rows, _TILE, cols, _TILE).sum(axis=(0, 2))
    mean: FloatArray = sums / np.maximum(counts, 1.0)
    return mean


def _chips(tile: FloatArray) -> FloatArray:
    """Orthonormal coefficients of the layout's bins: real parts, then imaginary parts."""
    bins = _layout().bins
    values = np.fft.fft2(tile)[bins[:, 0], bins[:, 1]] * (math.sqrt(2.0) / _TILE)
    return np.concatenate([values.real, values.imag])


def _pattern(chips: FloatArray) -> FloatArray:
    """The tile whose `_chips` are `chips`, and nothing at any other frequency."""
    bins = _layout().bins
    n = len(bins)
    values = (chips[:n] + 1j * chips[n:]) * (_TILE / math.sqrt(2.0))
    spectrum = np.zeros((_TILE, _TILE), np.complex128)
    spectrum[bins[:, 0], bins[:, 1]] = values
    spectrum[(-bins[:, 0]) % _TILE, (-bins[:, 1]) % _TILE] = np.conj(values)  # a real tile
    out: FloatArray = np.fft.ifft2(spectrum).real
    return out


def _read_chips(luma: FloatArray) -> FloatArray:
    """The chips as the reader sees them in an image that was not cropped."""
    return _chips(_fold(_band(luma)))


def _mark(chips: FloatArray, size: tuple[int, int]) -> FloatArray:
    """The luminance change at image size (width, height) that carries `chips`."""
    w, h = _band_size(size)
    band = np.tile(_pattern(chips), (-(-h // _TILE), -(-w // _TILE)))[:h, :w]
    return _resize(band, size)


# embedding ---------------------------------------------------------------------------


def embed(image: Image.Image, job_id: int, *, psnr: float = TARGET_PSNR) -> Image.Image:
    """`image` with an invisible mark carrying `job_id` (0 to 2**32 - 1), as a new RGB image."""
    if not 0 <= job_id < 2**32:
        raise ValueError(f"job id must be 0 to {2**32 - 1}, got {job_id!r}")
    if max(image.size) < MIN_SIDE:
        raise ValueError(
            f"image is {image.width}x{image.height}: a mark needs at least {MIN_SIDE} pixels "
            "on the longer side"
        )
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    current = _read_chips(rgb @ _LUMA)
    wanted = _chip_signs(job_id)
    # What the reader sees of a chip after resizing, the DWT and the high-pass; and how
    # much drawing the tile at image size smooths it, which the budget allows for.
    probe = _mark(wanted, image.size)
    gain = np.clip(_read_chips(probe) / wanted, 0.2, 1.0)
    drawn = float(np.mean(probe**2)) / (wanted.size / _TILE**2)
    delta = _informed(current, wanted, gain, psnr, drawn)
    # Two passes make up for what clipping at black and white took away.
    goal = current + delta
    change = delta / gain
    for _ in range(_CLIP_ROUNDS):
        marked = np.clip(np.rint(rgb + _mark(change, image.size)[..., None]), 0, 255)
        short = goal - _read_chips(marked @ _LUMA)
        if float(np.sqrt(np.mean(short**2))) < 0.05:
            break
        change = change + short / gain
    return Image.fromarray(marked.astype(np.uint8), "RGB")


def _informed(
    current: FloatArray, wanted: FloatArray, gain: FloatArray, psnr: float, drawn: float
) -> FloatArray:
    """Chip changes, as the reader sees them, that spend the PSNR budget.

    Improved spread spectrum (Malvar and Florencio, 2003): each chip moves by `alpha` in
    its wanted direction, less a share `lam` of the picture's own value there. The share
    shrinks where the budget could not pay for it.
    """
    # A chip change of d adds d times a unit pattern to every tile: d^2 / TILE^2 per pixel.
    budget = 255.0**2 / 10 ** (psnr / 10) * _TILE**2 / drawn
    inv = 1.0 / gain**2
    s_one = float(inv.sum())
    s_wc = float((inv * wanted * current).sum())
    s_cc = float((inv * current**2).sum())
    lam = min(_HOST_REJECTION, math.sqrt(0.5 * budget / max(s_cc, 1e-9)))
    # alpha solves sum(((alpha * w - lam * c) / g)^2) = budget.
    root = math.sqrt(max(lam**2 * s_wc**2 - s_one * (lam**2 * s_cc - budget), 0.0))
    alpha = (lam * s_wc + root) / s_one
    out: FloatArray = alpha * wanted - lam * current
    return out


# reading -----------------------------------------------------------------------------


def read(image: Image.Image) -> int | None:
    """The job id marked in `image`, or None when it carries no valid mark."""
    return inspect(image).job_id


def read_job_id(data: bytes) -> int | None:
    """The job id marked in an encoded image (PNG, JPEG, WebP, HEIC), or None.

    The bytes are decoded by intake's safe decoder (format allow-list, size limits before
    decoding); anything it refuses reads None.
    """
    from engine.intake import IntakeSettings, PhotoRefused, decode_image

    try:
        image = decode_image(data, IntakeSettings(min_side_px=32))
    except PhotoRefused:
        return None
    return read(image)


@dataclass(frozen=True, slots=True)
class _Alignment:
    z: float
    scale: float
    shift: tuple[float, float]  # (dx, dy) in LL pixels
    spectrum: ComplexArray  # of the mean tile at this scale


def inspect(image: Image.Image) -> WatermarkReading:
    """Search crop scales and tile shifts for the pilot; decode the payload where it is."""
    if max(image.size) < MIN_SIDE * 0.75 or min(image.size) < 32:
        return WatermarkReading(None, 0.0, 1.0, (0.0, 0.0))
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    base = _band(rgb @ _LUMA)  # each crop scale then resizes this small band
    coarse = sorted((_align(base, float(s)) for s in _CROP_SCALES), key=lambda a: -a.z)
    best = coarse[0]
    refined: list[float] = []
    for candidate in coarse:
        if candidate.z < _MIN_Z or len(refined) == _CANDIDATES:
            break
        if any(abs(candidate.scale - s) < 0.006 for s in refined):
            continue  # a neighbour of a scale already refined
        refined.append(candidate.scale)
        fine = sorted(
            (_align(base, candidate.scale + float(d)) for d in _FINE_STEPS), key=lambda a: -a.z
        )
        best = max(best, fine[0], key=lambda a: a.z)
        # A weak pilot can peak next to the right scale with the shift a pixel off: the
        # best few fine scales are decoded, and the check says which one was right.
        for alignment in fine[:_DECODES]:
            if alignment.z < _MIN_Z:
                break
            job_id = _decode(alignment)
            if job_id is not None:
                return WatermarkReading(job_id, alignment.z, alignment.scale, alignment.shift)
    return WatermarkReading(None, best.z, best.scale, best.shift)


def _align(base: FloatArray, scale: float) -> _Alignment:
    """The pilot's correlation with the mean tile at every cyclic shift, at one crop scale."""
    spectrum = np.fft.fft2(_fold(_shrink(base, scale)))
    lay = _layout()
    rows, cols = lay.bins[:_PILOT_BINS, 0], lay.bins[:_PILOT_BINS, 1]
    pilot = lay.pilot[:_PILOT_BINS] + 1j * lay.pilot[_PILOT_BINS:]
    observed = spectrum[rows, cols]
    # Phase only: each pilot coefficient votes equally, whatever the picture puts there.
    votes = observed / np.maximum(np.abs(observed), 1e-9) * np.conj(pilot)
    cross = np.zeros((_TILE, _TILE), np.complex128)
    cross[rows, cols] = votes
    cross[(-rows) % _TILE, (-cols) % _TILE] = np.conj(votes)
    corr = np.fft.ifft2(cross).real  # corr[dy, dx]: the pilot's tile origin at (dx, dy)
    top = int(np.argmax(corr))
    others = np.delete(corr.ravel(), top)
    z = float((corr.flat[top] - others.mean()) / max(float(others.std()), 1e-12))
    dy, dx = np.unravel_index(top, corr.shape)
    shift = _subpixel(votes, rows, cols, float(dx), float(dy))
    return _Alignment(z, scale, shift, spectrum)


def _shrink(band: FloatArray, scale: float) -> FloatArray:
    """`band` made `scale` times smaller, exactly: whole-pixel output sizes alone would
    allow only steps of 0.4%, coarser than the finest chips tolerate over the band."""
    if scale == 1.0:
        return band
    h, w = band.shape
    size = (max(1, int(w / scale)), max(1, int(h / scale)))
    box = (0.0, 0.0, size[0] * scale, size[1] * scale)
    img = Image.fromarray(band.astype(np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC, box=box), dtype=np.float64)


def _subpixel(
    votes: ComplexArray, rows: IntArray, cols: IntArray, dx: float, dy: float
) -> tuple[float, float]:
    """The shift to a fraction of a pixel: least squares on the pilot's remaining phases.

    A crop rarely moves the band by whole pixels, and at 0.45 cycles per pixel a half-pixel
    error turns a chip by 80 degrees.
    """
    k, m = _signed(rows).astype(np.float64), cols.astype(np.float64)
    design = np.stack([m, k], axis=1) * (2 * np.pi / _TILE)
    for _ in range(2):
        residual = np.angle(votes * np.exp(2j * np.pi * (k * dy + m * dx) / _TILE))
        step, *_ = np.linalg.lstsq(design, -residual, rcond=None)
        dx, dy = dx + float(np.clip(step[0], -1, 1)), dy + float(np.clip(step[1], -1, 1))
    return dx, dy


def _decode(alignment: _Alignment) -> int | None:
    lay = _layout()
    dx, dy = alignment.shift
    rows, cols = lay.bins[:, 0], lay.bins[:, 1]
    # Undo the shift: a tile moved by (dx, dy) has each bin turned by this phase.
    values = alignment.spectrum[rows, cols] * np.exp(
        2j * np.pi * (_signed(rows) * dy + cols * dx) / _TILE
    )
    p = _PILOT_BINS
    payload = np.concatenate([values.real[p:], values.imag[p:]])
    # Maximal-ratio combining: the picture, the reader's noise, is stronger at lower
    # frequencies, so each ring's chips count by the inverse of the ring's power.
    weighted = np.zeros_like(payload)
    for ring in range(_RINGS):
        sel = lay.ring == ring
        rms = max(float(np.sqrt(np.mean(payload[sel] ** 2))), 1e-12)
        weighted[sel] = np.clip(payload[sel] / rms, -3.0, 3.0) / rms
    soft = np.zeros(ecc.CODED_BITS)
    np.add.at(soft, lay.bit_of_chip, weighted * lay.key)
    return ecc.decode(soft, _KEY)
