"""An invisible watermark that carries a job id and survives JPEG, resizing, cropping,
mirroring and rotation.

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

Mirrors, rotations and big crops: every tile also carries a sync template, four strong
sinusoids below the chips' frequencies (30% of the budget), placed where pictures have
little power of their own and so that a mirror cannot pass for a turn. The power
spectrum does not move with a crop's offset, so their peaks there give the likeliest
mirror, angle and scale at once; the pilot is then searched around the best few of
those, with each undone. A picture that reads without them never pays for that search.

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
TARGET_PSNR = 41.0  # dB: the strength is chosen per image to spend about this much
_CANON = 512  # longer side of the size-normalised luminance
_TILE = 64  # tile side in the LL band: 4 tiles along the longer side
_BAND = (16.0, 31.0)  # radius of the chips' DFT bins, in cycles per tile
_PILOT_BINS = 200
_KEY = 0x5E1F1E  # seeds the layout and the check: another key is another, unreadable mark
_LUMA = np.array([0.299, 0.587, 0.114])
_HOST_REJECTION = 0.5  # share of the picture's own chip value taken out (ISS lambda)
_CLIP_ROUNDS = 2
_CROP_SCALES = np.arange(1.0, 1.3501, 0.005)  # crops of up to 26% of the longer side
_FINE_STEPS = np.arange(-0.006, 0.0061, 0.001)  # around a promising scale
_MIRROR_SCALES = np.arange(1.0, 1.0501, 0.005)  # a mirrored picture, at most a little cropped
_MIN_Z = 4.5  # pilot peak over the other alignments, in standard deviations
_CANDIDATES = 3  # promising scales searched finely before giving up...
_DECODES = 6  # ...and how many of the best fine alignments of each are decoded
_RINGS = 6  # frequency rings, each weighted by its own noise when decoding
# The sync template: a few strong peaks that a mirror, a rotation and a big crop move
# where the reader can find them in the picture's spectrum.
_SYNC_SHARE = 0.3  # of the PSNR budget
_SPECTRUM = 512  # the padded FFT the reader looks for the template in: 8 bins per cycle
_WHITEN = 15  # bins: the spectrum is divided by its mean over a box this wide
_PEAK_CAP = 30.0  # no single peak may outvote the others
_SYNC_ANGLES = np.arange(-6.0, 6.001, 0.25)  # degrees
_SYNC_SCALES = np.exp(np.arange(math.log(0.8), math.log(1.9), 0.005))
_SYNC_COARSE_ANGLES = (-0.5, 0.0, 0.5)  # degrees, around a geometry found
_SYNC_COARSE_SCALES = np.arange(-0.015, 0.0151, 0.005)
_SYNC_FINE_ANGLES = (-0.2, 0.0, 0.2)  # degrees
_SYNC_FINE_SCALES = np.arange(-0.003, 0.0031, 0.001)
_GEOMETRIES = 3  # the best distinct geometries searched coherently


@dataclass(frozen=True, slots=True)
class WatermarkReading:
    """What the reader found: the job id (None without a valid mark) and how sure it was."""

    job_id: int | None
    z: float  # pilot peak over the other alignments, in standard deviations
    scale: float  # the marked image's longer side over this one's (1.0: not cropped)
    shift: tuple[float, float]  # the tile origin found, in LL pixels (x, y)
    mirrored: bool = False  # found mirrored left to right
    angle: float = 0.0  # degrees it was found turned by, counter-clockwise, after any mirror


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
    return _draw(_pattern(chips), size)


def _draw(tile: FloatArray, size: tuple[int, int]) -> FloatArray:
    """`tile` repeated over the band of an image of `size`, drawn at that size."""
    w, h = _band_size(size)
    band = np.tile(tile, (-(-h // _TILE), -(-w // _TILE)))[:h, :w]
    return _resize(band, size)


# the sync template -------------------------------------------------------------------


def _sync_bins() -> IntArray:
    """The template's DFT bins (signed row, column), at lower frequencies than the chips.

    Chosen by hand rather than drawn: 30 to 60 degrees away from the axes, where
    pictures (edges, horizons, their own borders) put the most power; and far, in both
    angle and radius, from one another's mirror images, so a mirror cannot pass for a
    turn.
    """
    return np.array([(6, 10), (11, 8), (-9, 10), (-10, 5)], dtype=np.intp)


@functools.cache
def _sync_tile() -> FloatArray:
    """A tile with the template's peaks, each a sinusoid of a fixed random phase."""
    bins = _sync_bins()
    phases = np.random.default_rng(_KEY + 2).uniform(0, 2 * np.pi, len(bins))
    spectrum = np.zeros((_TILE, _TILE), np.complex128)
    spectrum[bins[:, 0] % _TILE, bins[:, 1]] = np.exp(1j * phases)
    spectrum[(-bins[:, 0]) % _TILE, (-bins[:, 1]) % _TILE] = np.exp(-1j * phases)
    tile: FloatArray = np.fft.ifft2(spectrum).real
    return tile / float(np.sqrt(np.mean(tile**2)))


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
    # The sync template takes its share of the budget; the chips get the rest.
    chips_psnr = psnr - 10 * math.log10(1 - _SYNC_SHARE)
    delta = _informed(current, wanted, gain, chips_psnr, drawn)
    sync = _draw(_sync_tile(), image.size)
    sync *= math.sqrt(_SYNC_SHARE * 255.0**2 / 10 ** (psnr / 10) / float(np.mean(sync**2)))
    # Two passes make up for what clipping at black and white took away.
    goal = current + delta
    change = delta / gain
    for _ in range(_CLIP_ROUNDS):
        drawn_mark = _mark(change, image.size) + sync
        marked = np.clip(np.rint(rgb + drawn_mark[..., None]), 0, 255)
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
    shift: tuple[float, float]  # (dx, dy) in whole LL pixels; _subpixel makes it finer
    spectrum: ComplexArray  # of the mean tile at this scale
    votes: ComplexArray  # the pilot bins' phases against the pilot


def inspect(image: Image.Image) -> WatermarkReading:
    """Search crop scales and tile shifts for the pilot and decode the payload where it
    is; failing that, undo the mirror, rotation and scale the sync template shows."""
    if max(image.size) < MIN_SIDE * 0.75 or min(image.size) < 32:
        return WatermarkReading(None, 0.0, 1.0, (0.0, 0.0))
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    base = _band(rgb @ _LUMA)  # each crop scale then resizes this small band
    found = _search_scales(base)
    if found.job_id is not None:
        return found
    white = _whitened(base)
    for geometry in _geometries(white):
        reading = _search_geometry(base, geometry)
        if reading.job_id is not None:
            return reading
    # A plain mirror is the commonest edit: tried as such, should the template be lost
    # in what the picture itself puts at its frequencies.
    mirrored = _search_scales(base[:, ::-1], _MIRROR_SCALES, mirrored=True)
    return mirrored if mirrored.job_id is not None else found


def _search_scales(
    base: FloatArray, scales: FloatArray = _CROP_SCALES, *, mirrored: bool = False
) -> WatermarkReading:
    """The pilot searched over crop scales alone: a picture not rotated (and `mirrored`
    when the band given was mirrored back)."""
    coarse = sorted((_align(base, float(s)) for s in scales), key=lambda a: -a.z)
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
                return WatermarkReading(
                    job_id, alignment.z, alignment.scale, alignment.shift, mirrored
                )
    return WatermarkReading(None, best.z, best.scale, best.shift)


@dataclass(frozen=True, slots=True)
class _Geometry:
    mirrored: bool
    angle: float  # radians: the picture's rotation since it was marked
    scale: float  # the tiles' size over the marked picture's, in the normalised domain


def _whitened(base: FloatArray) -> FloatArray:
    """The band's power spectrum (rfft, padded) over its local mean: about 1 where only
    the picture is, more where the mark's tiles put a peak."""
    h, w = base.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2(base * window, s=(_SPECTRUM, _SPECTRUM))) ** 2
    white: FloatArray = np.minimum(power / (_box(power, _WHITEN) + 1e-12), _PEAK_CAP)
    return white


def _spectrum_score(
    spectrum: FloatArray,
    bins: FloatArray,
    mirrors: FloatArray,
    angles: FloatArray,
    scales: FloatArray,
) -> FloatArray:
    """The sum of `spectrum` where each DFT bin of a tile (signed row, column) lands for
    each mirror (1 or -1), angle (radians) and scale: an array (mirror, angle, scale)."""
    # Frequencies (x, y) in cycles per tile: rotated by each angle, mirrored in x.
    fx = mirrors[:, None, None] * bins[None, None, :, 1]
    fy = np.broadcast_to(bins[None, None, :, 0], fx.shape)
    cos, sin = np.cos(angles)[None, :, None], np.sin(angles)[None, :, None]
    rx, ry = cos * fx - sin * fy, sin * fx + cos * fy  # (mirror, angle, bin)
    per_cycle = _SPECTRUM / _TILE / scales[None, None, :, None]
    x, y = rx[:, :, None, :] * per_cycle, ry[:, :, None, :] * per_cycle
    flip = x < 0  # a real picture's spectrum: the point opposite holds the same power
    x = np.minimum(np.where(flip, -x, x), _SPECTRUM // 2 - 1)
    y = np.where(flip, -y, y)
    # Bilinear: the score moves smoothly with the angle and the scale.
    x0, y0 = np.floor(x), np.floor(y)
    wx, wy = x - x0, y - y0
    c0, r0 = x0.astype(np.intp), y0.astype(np.intp) % _SPECTRUM
    r1 = (r0 + 1) % _SPECTRUM
    values = (1 - wy) * ((1 - wx) * spectrum[r0, c0] + wx * spectrum[r0, c0 + 1]) + wy * (
        (1 - wx) * spectrum[r1, c0] + wx * spectrum[r1, c0 + 1]
    )
    out: FloatArray = values.sum(axis=-1)
    return out


def _geometries(white: FloatArray) -> list[_Geometry]:
    """The likeliest mirrors, rotations and scales of the marked picture, best first:
    where the sync template's peaks stand out in the picture's whitened power spectrum
    (a spectrum does not move with a crop's offset, so only these three are searched)."""
    angles = np.deg2rad(_SYNC_ANGLES)
    score = _spectrum_score(
        _box(white, 3),  # a peak spreads over a few bins
        _sync_bins().astype(np.float64),
        np.array([1.0, -1.0]),
        angles,
        _SYNC_SCALES,
    )
    found: list[_Geometry] = []
    for index in np.argsort(score, axis=None)[::-1]:
        m, a, sc = np.unravel_index(int(index), score.shape)
        geometry = _Geometry(bool(m), float(angles[a]), float(_SYNC_SCALES[sc]))
        if not any(_near(g, geometry) for g in found):
            found.append(geometry)
        if len(found) == _GEOMETRIES:
            break
    return found


def _near(a: _Geometry, b: _Geometry) -> bool:
    return (
        a.mirrored == b.mirrored
        and abs(a.angle - b.angle) < np.deg2rad(1.0)
        and abs(math.log(a.scale / b.scale)) < 0.03
    )


def _search_geometry(base: FloatArray, geometry: _Geometry) -> WatermarkReading:
    """The pilot searched around one geometry, scale first (the pilot forgives an angle
    a few tenths of a degree off, a scale only a few tenths of a percent), then finer;
    the payload decoded at the best alignments."""
    turned: dict[float, FloatArray] = {}

    def align(angle: float, scale: float) -> tuple[float, _Alignment]:
        if angle not in turned:
            turned[angle] = _turned(base, geometry.mirrored, angle)
        return angle, _align(turned[angle], scale)

    coarse = [
        align(geometry.angle + np.deg2rad(da), geometry.scale * (1 + ds))
        for da in _SYNC_COARSE_ANGLES
        for ds in _SYNC_COARSE_SCALES
    ]
    angle, best = max(coarse, key=lambda a: a[1].z)
    if best.z < _MIN_Z:
        return WatermarkReading(None, best.z, best.scale, best.shift)
    tries = [
        align(angle + np.deg2rad(da), best.scale * (1 + ds))
        for da in _SYNC_FINE_ANGLES
        for ds in _SYNC_FINE_SCALES
    ]
    tries.sort(key=lambda a: -a[1].z)
    for angle, alignment in tries[:_DECODES]:
        if alignment.z < _MIN_Z:
            break
        job_id = _decode(alignment)
        if job_id is not None:
            # The band's rows run down the picture: its clockwise is the picture's counter.
            return WatermarkReading(
                job_id,
                alignment.z,
                alignment.scale,
                alignment.shift,
                geometry.mirrored,
                -math.degrees(angle),
            )
    top = tries[0][1]
    return WatermarkReading(None, top.z, top.scale, top.shift)


def _turned(base: FloatArray, mirrored: bool, angle: float) -> FloatArray:
    """The band with a mirror and then a turn by `angle` undone, about its centre (the
    scale is left to `_align`: a resize is cheaper than a second affine warp)."""
    band = base
    if mirrored:  # the turn came after the mirror: undone, it runs the other way
        band, angle = base[:, ::-1], -angle
    h, w = band.shape
    cos, sin = math.cos(angle), math.sin(angle)
    # Pixel (x, y) of the result reads the band at centre + R(angle) ((x, y) - centre).
    cx, cy = w / 2, h / 2
    affine = (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
    img = Image.fromarray(band.astype(np.float32), mode="F")
    out = img.transform((w, h), Image.Transform.AFFINE, affine, Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float64)


def _box(values: FloatArray, size: int) -> FloatArray:
    """The mean over a size x size box around each value (edges: the box is clipped)."""
    out = values
    for axis in (0, 1):
        sums = np.cumsum(np.moveaxis(out, axis, 0), axis=0)
        sums = np.concatenate([np.zeros_like(sums[:1]), sums])
        n = sums.shape[0] - 1
        lo = np.clip(np.arange(n) - size // 2, 0, n)
        hi = np.clip(np.arange(n) + size // 2 + 1, 0, n)
        counts = (hi - lo).reshape(-1, *([1] * (sums.ndim - 1)))
        out = np.moveaxis((sums[hi] - sums[lo]) / counts, 0, axis)
    return out


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
    return _Alignment(z, scale, (float(dx), float(dy)), spectrum, votes)


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
    rows, cols = lay.bins[:, 0], lay.bins[:, 1]
    p = _PILOT_BINS
    dx, dy = _subpixel(alignment.votes, rows[:p], cols[:p], *alignment.shift)
    # Undo the shift: a tile moved by (dx, dy) has each bin turned by this phase.
    values = alignment.spectrum[rows, cols] * np.exp(
        2j * np.pi * (_signed(rows) * dy + cols * dx) / _TILE
    )
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
