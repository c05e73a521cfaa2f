"""Kinds of photo dermsight tells apart before any diagnosis (no torch, no I/O).

Every photo is routed to the model made for its kind: ``dermoscopy`` (a dermatoscope's close,
lit, magnified view), ``clinical`` (an ordinary camera or phone photo of skin), or ``not_skin``
(anything else: it gets no diagnosis, only :data:`REFUSAL`). A served model folder declares the
kind it answers in ``model.json`` (``photo_type``); the router folder declares ``kind: router``.
"""

from __future__ import annotations

PHOTO_TYPES = ("dermoscopy", "clinical", "not_skin")
SKIN_TYPES = ("dermoscopy", "clinical")

REFUSAL = ("This doesn't look like a close-up photo of skin, so dermsight gives no assessment "
           "of it.")
REFUSAL_ADVICE = ("Take a sharp photo of the skin area itself, filling most of the frame, in "
                  "even daylight. If this is a photo of skin, choose its kind (clinical or "
                  "dermoscopy) and send it again.")

DESCRIPTIONS = {
    "dermoscopy": "a dermoscopy photo (taken through a dermatoscope)",
    "clinical": "a clinical photo of skin (camera or phone)",
    "not_skin": "not a close-up photo of skin",
}


def check_photo_type(value: str | None, *, allow_not_skin: bool = False,
                     where: str = "photo_type") -> str | None:
    """``value`` normalised (None stays None: let the router decide).

    Raises:
        ValueError: an unknown kind (the message names ``where`` and the allowed kinds).
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    kind = str(value).strip().lower().replace("-", "_")
    allowed = PHOTO_TYPES if allow_not_skin else SKIN_TYPES
    if kind not in allowed:
        raise ValueError(f"{where} must be one of {', '.join(('auto',) + allowed)}, "
                         f"got {value!r}")
    return kind

