"""Image features: photo quality (quality.py), degradations (degrade.py), skin tone."""
