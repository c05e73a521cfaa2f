"""One photo upload to tracking: its limits, its EXIF capture time, its capture time as given,
and its decoding (:func:`dermsight.imaging.decode_rgb`, the decoder every stage uses).

The limits are serving's (:data:`~dermsight.imaging.DEFAULT_MAX_UPLOAD_BYTES`,
:data:`~dermsight.imaging.DEFAULT_MAX_PIXELS`; the serving app passes its settings'). Every
failure is an :class:`~dermsight.errors.ApiError` naming the field (``file`` or ``taken_at``).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image, UnidentifiedImageError

from dermsight.errors import ApiError, DataError
from dermsight.imaging import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, decode_rgb

EXIF_DATETIME_ORIGINAL = 36867
EXIF_IFD = 0x8769
#: the shortest side a tracked photo may have, in pixels
MIN_SIDE = 32


def utc(dt: datetime | None) -> datetime | None:
    """``dt`` as an aware UTC datetime (naive times are taken as UTC); None stays None."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_taken_at(value: str | None) -> datetime | None:
    """ISO 8601 (``2026-03-01``, ``2026-03-01T10:00:00+02:00``, ``…Z``) → aware UTC datetime.

    Naive times are taken as UTC. Raises ApiError(422) naming ``taken_at`` otherwise, or when
    the time is more than a day in the future or before 1900.
    """
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ApiError(422, "invalid_timestamp",
                       f"taken_at '{text}' is not an ISO 8601 date/time "
                       "(e.g. 2026-03-01T10:00:00Z)", "taken_at") from None
    dt = utc(dt)
    if dt > datetime.now(UTC) + timedelta(days=1):
        raise ApiError(422, "invalid_timestamp", f"taken_at '{text}' is in the future",
                       "taken_at")
    if dt.year < 1900:
        raise ApiError(422, "invalid_timestamp", f"taken_at '{text}' is before 1900",
                       "taken_at")
    return dt


def _check_header(data: bytes, name: str, max_bytes: int,
                  max_pixels: int) -> datetime | None:
    """Size checks from the bytes and the image header (nothing is decoded); returns the EXIF
    capture time (DateTimeOriginal) or None."""
    if not data:
        raise ApiError(422, "empty_file", f"'{name}' is empty (0 bytes)", "file")
    if len(data) > max_bytes:
        raise ApiError(413, "file_too_large",
                       f"'{name}' is {len(data)} bytes; the limit is {max_bytes}", "file")
    taken = None
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise ApiError(413, "image_too_large",
                               f"'{name}' has {im.width}×{im.height} pixels; the limit is "
                               f"{max_pixels}", "file")
            try:
                raw = im.getexif().get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL)
                if raw:
                    taken = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
                    taken = taken.replace(tzinfo=UTC)
            except (ValueError, TypeError, KeyError, OSError):
                taken = None
    except ApiError:
        raise
    except UnidentifiedImageError:  # its message shows the upload's buffer object, not a reason
        raise ApiError(422, "invalid_image",
                       f"'{name}' is not a readable image (not a format this server reads)",
                       "file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(422, "invalid_image", f"'{name}' is not a readable image: {exc}",
                       "file") from None
    return taken


def decode_upload(data: bytes, name: str = "upload", *,
                  max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, datetime | None]:
    """(RGB uint8 with EXIF orientation applied, EXIF DateTimeOriginal or None), decoded once
    by :func:`dermsight.imaging.decode_rgb` (any colour mode as
    :func:`dermsight.imaging.to_rgb` says) after the size checks on the bytes and the header."""
    taken = _check_header(data, name, max_bytes, max_pixels)
    try:
        rgb = decode_rgb(data, max_pixels=max_pixels, name=name)
    except DataError as exc:
        raise ApiError(422, "invalid_image", str(exc), "file") from None
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ApiError(422, "invalid_image",
                       f"'{name}' is {rgb.shape[1]}×{rgb.shape[0]} pixels; at least {MIN_SIDE} "
                       "a side", "file")
    return rgb, taken
