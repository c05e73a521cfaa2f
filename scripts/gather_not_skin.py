"""Gather photos and pictures that are NOT of skin, to train and validate the photo-type router.

    python scripts/gather_not_skin.py --out runs/not_skin [--per-package 400] [--rendered 400]

Sources, all installable offline here (nothing is committed; the images stay under ``--out``):
- Debian packages of wallpapers, photos, clip art and astronomy images (``PACKAGES``; install
  them with ``apt-get install``; a package that is not installed is skipped with a note). The
  packages ``gnome-backgrounds``, ``ukui-wallpapers`` and ``tuxpaint-stamps-*`` are reserved for
  the project's withheld scoring of refusals and are refused here;
- the sample images of scikit-image, scikit-learn and matplotlib (a cat, coffee, a rocket, an
  astronaut, a portrait, coins, textures, a retina, a page of text, …);
- pictures rendered here: documents, screenshots, charts, noise, gradients and flat colours.

Each picture is written as ``<out>/<source>/<name>.jpg`` (long side at most 512 px, alpha
composited onto a flat colour); near-identical files (one wallpaper at several resolutions) are
kept once (pHash). ``<out>/sources.csv`` lists file, source and origin.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds", "lomiri-wallpapers",
            "lomiri-wallpapers-20.04", "lomiri-wallpapers-16.04", "sway-backgrounds",
            "desktop-base", "openclipart-png", "jigzo-data", "gcompris-qt-data", "kstars-data")
RESERVED = ("gnome-backgrounds", "ukui-wallpapers", "tuxpaint-stamps")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MIN_SIDE = 96
LONG_SIDE = 512


def _package_files(package: str) -> list[Path]:
    try:
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        print(f"note: Debian package {package} is not installed: skipped", file=sys.stderr)
        return []
    return sorted(Path(p) for p in out.splitlines() if p.lower().endswith(EXTENSIONS))


def _sample_files() -> list[tuple[str, Path]]:
    import matplotlib
    import skimage
    import sklearn.datasets

    out = []
    sk = Path(skimage.__file__).parent / "data"
    for name in ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png",
                 "coins.png", "color.png", "grass.png", "gravel.png", "horse.png",
                 "hubble_deep_field.jpg", "ihc.png", "logo.png", "moon.png", "page.png",
                 "retina.jpg", "rocket.jpg", "text.png", "motorcycle_left.png",
                 "microaneurysms.png", "cell.png", "clock_motion.png"):
        out.append(("skimage", sk / name))
    sl = Path(sklearn.datasets.__file__).parent / "images"
    out += [("sklearn", sl / "china.jpg"), ("sklearn", sl / "flower.jpg")]
    mp = Path(matplotlib.get_data_path()) / "sample_data"
    out += [("matplotlib", mp / "grace_hopper.jpg"), ("matplotlib", mp / "logo2.png")]
    return [(s, p) for s, p in out if p.is_file()]


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A picture as RGB uint8, transparency composited onto ``background``."""
    image.load()
    if image.mode in ("P", "LA", "RGBA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, background + (255,))
        image = Image.alpha_composite(canvas, image)
    if image.mode.startswith("I;16") or image.mode == "I":
        arr = np.asarray(image, np.float64)
        image = Image.fromarray(np.clip(arr / 257.0, 0, 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def _shrink(rgb: np.ndarray) -> Image.Image:
    image = Image.fromarray(rgb)
    scale = LONG_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.LANCZOS)
    return image


# ---- rendered pictures ---------------------------------------------------------------------
WORDS = ("the quick brown fox jumps over the lazy dog invoice total amount due date account "
         "settings profile save cancel open file edit view help report summary page chapter "
         "meeting agenda notes project status budget results figure table").split()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def _document(rng: np.random.Generator) -> Image.Image:
    w, h = int(rng.integers(300, 520)), int(rng.integers(380, 520))
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    image = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(9, 20))
    y = int(rng.integers(10, 40))
    while y < h - size:
        line = " ".join(rng.choice(WORDS, int(rng.integers(3, 12))))
        draw.text((int(rng.integers(8, 30)), y), line, fill=(int(rng.integers(0, 80)),) * 3,
                  font=_font(size))
        y += int(size * rng.uniform(1.3, 2.2))
    return image


def _screenshot(rng: np.random.Generator) -> Image.Image:
    w, h = int(rng.integers(360, 520)), int(rng.integers(240, 400))
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, w, 24], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    for _ in range(int(rng.integers(4, 14))):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(26, h - 20))
        x1, y1 = x0 + int(rng.integers(30, 200)), y0 + int(rng.integers(14, 90))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
                       outline=(40, 40, 40))
        draw.text((x0 + 4, y0 + 2), str(rng.choice(WORDS)), fill=(0, 0, 0), font=_font(12))
    return image


def _chart(rng: np.random.Generator) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(rng.uniform(3, 5), rng.uniform(2.5, 4)), dpi=100)
    x = np.arange(int(rng.integers(5, 40)))
    kind = int(rng.integers(3))
    if kind == 0:
        ax.plot(x, np.cumsum(rng.normal(size=len(x))))
    elif kind == 1:
        ax.bar(x, rng.random(len(x)))
    else:
        ax.scatter(rng.random(50), rng.random(50), c=rng.random(50))
    ax.set_title(" ".join(rng.choice(WORDS, 3)))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _noise(rng: np.random.Generator) -> Image.Image:
    h, w = int(rng.integers(200, 480)), int(rng.integers(200, 480))
    kind = int(rng.integers(4))
    if kind == 0:
        arr = rng.integers(0, 256, (h, w, 3))
    elif kind == 1:  # smooth gradient between two colours
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, w)[None, :, None]
        arr = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3))
    elif kind == 2:  # flat colour with slight sensor noise
        arr = rng.integers(0, 256, 3)[None, None, :] + rng.normal(0, 4, (h, w, 3))
    else:  # blurred blobs
        small = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40), 3)).astype(np.uint8)
        return Image.fromarray(small).resize((w, h), Image.BICUBIC)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


RENDERERS = {"document": _document, "screenshot": _screenshot, "chart": _chart, "noise": _noise}


def gather(out: Path, *, per_package: int = 400, rendered: int = 400, seed: int = 0) -> int:
    if any(p.startswith(RESERVED) for p in PACKAGES):
        raise SystemExit(f"refusing reserved packages {RESERVED}")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    hashes: list[imagehash.ImageHash] = []

    def keep(source: str, name: str, image: Image.Image, origin: str) -> None:
        h = imagehash.phash(image)
        if any(h - other <= 4 for other in hashes):
            return
        hashes.append(h)
        folder = out / source
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.jpg"
        image.save(path, quality=90)
        rows.append((str(path.relative_to(out)), source, origin))

    candidates = [(s, p) for s, p in _sample_files()]
    for package in PACKAGES:
        files = _package_files(package)
        files.sort(key=lambda p: -p.stat().st_size)  # the largest copy of a wallpaper first
        if len(files) > per_package:
            pick = rng.choice(len(files), per_package, replace=False)
            files = [files[i] for i in sorted(pick)]
        candidates += [(package, p) for p in files]
    for source, path in candidates:
        try:
            with Image.open(path) as image:
                background = tuple(int(v) for v in rng.integers(0, 256, 3)) \
                    if rng.random() < 0.5 else (255, 255, 255)
                rgb = to_rgb(image, background)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if min(rgb.shape[:2]) < MIN_SIDE:
            continue
        name = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        keep(source, name, _shrink(rgb), str(path))
    for i in range(rendered):
        kind = list(RENDERERS)[i % len(RENDERERS)]
        keep(f"rendered-{kind}", f"{kind}-{i:04d}", RENDERERS[kind](rng), f"rendered {kind}")
    with open(out / "sources.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "source", "origin"])
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-package", type=int, default=400)
    parser.add_argument("--rendered", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = gather(args.out, per_package=args.per_package, rendered=args.rendered, seed=args.seed)
    print(f"{n} pictures in {args.out}")


if __name__ == "__main__":
    main()
