"""dermsight: skin-condition classification from photos, equally good on dark and light skin.

Not medical advice. See the README for what it can and cannot do.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "dermsight is a research tool, not a medical device. Its output is not a diagnosis and "
    "is not medical advice: see a qualified clinician about any skin concern."
)
