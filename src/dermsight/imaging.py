"""Image bytes in, pixels out: the one decoder every stage uses (prepare, training, evaluation,
serving, tracking). numpy, Pillow and OpenCV only: no torch.

:func:`decode_image` decodes fully (EXIF orientation applied, decompression-bomb guard) to the
pixels a person sees (:func:`to_rgb`) and raises :class:`ImageRejected` with a reason a person
understands; :func:`decode_rgb` is the same for one upload, raising
:class:`~dermsight.errors.DataError` naming it. Only the RGB pixels come out: EXIF (GPS
included) is never kept. :func:`downscale` shrinks for measuring, :func:`load_mask` (and
:func:`read_mask`) reads a dataset's lesion mask. :data:`DEFAULT_MAX_PIXELS` and
:data:`DEFAULT_MAX_UPLOAD_BYTES` are the upload limits of serving and tracking
(``ServeSettings`` takes its defaults from them).
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermsight.errors import DataError
from dermsight.io import read_bytes

#: the largest decoded image an upload may be (width × height): the bomb guard
DEFAULT_MAX_PIXELS = 40_000_000
#: the largest image file an upload may be, in bytes
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class ImageRejected(Exception):
    """The image cannot be used; the message is the audit's reason."""


#: grey level transparent pixels are composited onto: black, what the usual fully transparent
#: (0, 0, 0, 0) pixels of an RGBA image always decoded to; the colour under them is never kept
BACKGROUND = 0
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")


def _grey_uint8(img: Image.Image) -> np.ndarray:
    """A high-depth grey image (``I;16*``, ``I``, ``F``) scaled to uint8 ``(H, W)``.

    ``I;16*``: 0..65535 → 0..255. ``I`` (32-bit; older Pillow opens 16-bit PNGs so): the same
    when every value is within 0..65535, else its min..max. ``F``: 0..1 → 0..255 when every
    value is within 0..1, kept when within 0..255, else its min..max. Not a number → 0.
    """
    a = np.asarray(img)
    values = a.astype(np.float32)
    values[~np.isfinite(values)] = 0.0
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode in _GREY16 or (img.mode == "I" and lo >= 0 and hi <= 65535):
        low, full = 0.0, 65535.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        low, full = 0.0, 1.0
    elif img.mode == "F" and lo >= 0 and hi <= 255:
        low, full = 0.0, 255.0
    else:
        low, full = lo, max(hi - lo, 1e-12)
    grey = np.clip(np.rint((values - low) * (255.0 / full)), 0, 255).astype(np.uint8)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int) and img.mode in _GREY16 + ("I",):
        grey[a == transparent] = BACKGROUND  # a grey PNG's tRNS value
    return grey


def to_rgb(img: Image.Image) -> np.ndarray:
    """The pixels a person sees in ``img`` (any mode Pillow opens) as RGB uint8 ``(H, W, 3)``.

    High-depth grey (16-bit ``I;16``/``I;16B``/``I``, float ``F``) is scaled to 8 bits
    (:func:`_grey_uint8`), not clipped (a 16-bit value of 20000 is mid-grey, not white);
    16-bit RGB(A) PNGs and TIFFs are opened by Pillow at 8 bits already. Anything transparent
    (an alpha channel: ``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``; a palette or
    colour ``tRNS``) is composited onto :data:`BACKGROUND`. ``CMYK``, ``YCbCr``, ``LAB``,
    ``HSV``, 1-bit and palettes go through Pillow's conversion.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return np.asarray(img)
    if mode in _GREY16 + ("I", "F"):
        return np.repeat(_grey_uint8(img)[:, :, None], 3, axis=2)
    if mode == "La":
        img = img.convert("LA")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"))
        if rgba[:, :, 3].min() == 255:  # opaque after all
            return np.ascontiguousarray(rgba[:, :, :3])
        alpha = rgba[:, :, 3:].astype(np.uint16)
        out = (rgba[:, :, :3] * alpha + BACKGROUND * (255 - alpha) + 127) // 255
        return out.astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def decode_image(data: bytes, *, max_pixels: int, min_side: int = 1,
                 draft_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode image bytes fully to RGB uint8 (H, W, 3), applying EXIF orientation, as a person
    sees them whatever the colour mode (:func:`to_rgb`: 16-bit grey scaled, alpha composited).

    Returns the pixels and the upright full-resolution (width, height), before any draft
    reduction.

    Raises ImageRejected with a reason a person understands (empty, not an image, truncated,
    too large, too small). ``draft_size`` lets JPEG decoding skip resolution that would be
    thrown away (the whole stream is still decoded, so truncation is still caught).
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageRejected(f"too large ({w}x{h} > {max_pixels} pixels)")
            if min(w, h) < min_side:
                raise ImageRejected(f"too small ({w}x{h}, shorter side < {min_side} px)")
            if draft_size and img.format == "JPEG" and max(w, h) >= 2 * draft_size:
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            drafted = img.size
            img = ImageOps.exif_transpose(img)
            if img.size != drafted:  # rotated by EXIF orientation: report upright size
                w, h = h, w
            try:
                rgb = to_rgb(img)
            except ValueError as exc:  # a mode this Pillow cannot convert
                raise ImageRejected(f"unsupported colour mode {img.mode} ({exc})") from None
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not a readable image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"too large ({exc})") from None
    except OSError as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text else "corrupt"
        raise ImageRejected(f"{reason} ({text})") from None
    except (ValueError, SyntaxError) as exc:
        raise ImageRejected(f"corrupt ({exc})") from None
    return rgb, (w, h)


def downscale(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink so the long side is at most ``long_side`` (never enlarges)."""
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def read_mask(uri: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A lesion mask (any image, read as grey) as uint8 ``(H, W)`` resized (bilinear) to
    ``shape``, or None when it cannot be read. Threshold it at 128 (:func:`load_mask`), after
    any further resizing (evaluation aligns it with the model input first)."""
    try:
        data = read_bytes(uri)
        mask = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if mask.shape != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return mask


def load_mask(uri: str, shape: tuple[int, int]) -> np.ndarray | None:
    """:func:`read_mask` thresholded at 128: bool ``(H, W)``, or None when it cannot be read."""
    mask = read_mask(uri, shape)
    return None if mask is None else mask >= 128


def decode_rgb(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str = "image") -> np.ndarray:
    """Decode one upload (JPEG, PNG, WebP, ...) to RGB uint8 ``(H, W, 3)``, upright, contiguous.

    Raises:
        DataError: ``"{name}: <reason>"`` for empty, truncated, corrupt or unreadable data and
            for images over ``max_pixels`` pixels (decompression bombs).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError(f"{name}: expected image bytes, got {type(data).__name__}")
    try:
        rgb, _ = decode_image(bytes(data), max_pixels=max_pixels)
    except ImageRejected as exc:
        raise DataError(f"{name}: {exc}") from None
    return np.ascontiguousarray(rgb)
