"""Skin type from the photo against dermatologists' Fitzpatrick labels: the learned estimate,
this project's ITA, and what users install today (stone, derm-ita), on the same photos.

    # 1. in the project's venv: the router's validation photos of Fitzpatrick17k with a known
    #    type; our learned estimate and our ITA (-> runs/skin_type_compare.csv)
    .venv/bin/python benchmarks/skin_type_compare.py measure
    # 2. in a separate venv (stone needs opencv-python, which clashes with the project's
    #    opencv-python-headless):
    python3.11 -m venv runs/tools-venv && runs/tools-venv/bin/pip install skin-tone-classifier \\
        derm-ita pandas scipy
    runs/tools-venv/bin/python benchmarks/skin_type_compare.py tools
    # 3. the table (either venv)
    python benchmarks/skin_type_compare.py table [--out experiments/router/skin_type_compare.json]

Methods, each mapped to a Fitzpatrick type 1-6 where it can be:
- ``learned``: the router's skin-type head (expected type, rounded);
- ``ita``: this project's ITA (``compute_skin_tone``, default), Chardon category index;
- ``derm-ita``: ``derm_ita.get_ita`` on the whole photo (its border removed), mapped with its
  ``get_kinyanjui_groh_type`` (Groh et al. 2021);
- ``stone``: ``stone.process`` (skin-tone-classifier), the darkness of its skin tone in its
  default "perla" palette (an ordinal 1-11 scale, not Fitzpatrick: Spearman only).
Spearman's ρ with the label (sign-corrected so higher = agrees), share within ±1 type and
exact, overall and per type.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

CSV = Path("runs/skin_type_compare.csv")
METHODS = ("learned", "ita", "derm-ita", "stone")


def measure(out: Path, router_dir: Path) -> None:
    from dermsight.features.skintone import compute_skin_tone, ita_category_index
    from dermsight.imaging import decode_image
    from dermsight.io import read_bytes
    from dermsight.serve.router import Router
    from dermsight.train.router import load_router_data

    router = Router.load(router_dir)
    spec = router.info["data"]
    data = load_router_data(spec["sources"], spec["not_skin"], seed=spec.get("seed", 0))
    frame = data.frame
    rows = frame[(frame["split"] == "val") & (frame["photo_type"] == "clinical")
                 & frame["fitzpatrick"].between(1, 6)].reset_index(drop=True)
    records = []
    for s in range(0, len(rows), 32):
        chunk = rows.iloc[s:s + 32]
        images = [decode_image(read_bytes(u), max_pixels=10**8)[0] for u in chunk["image_uri"]]
        _, _, emb = router.probabilities(images, embeddings=True)
        estimates = router.skin_types(emb, withheld=True)
        for (_, row), rgb, est in zip(chunk.iterrows(), images, estimates):
            ita = float(compute_skin_tone(rgb)["ita"])
            records.append({"image_uri": row["image_uri"], "fitzpatrick": int(row["fitzpatrick"]),
                            "learned_score": est["expected"], "learned": est["fitzpatrick"],
                            "ita_score": -ita, "ita": ita_category_index(ita)
                            if np.isfinite(ita) else np.nan})
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(out, index=False)
    print(f"wrote {out} ({len(records)} photos)")


def tools(path: Path) -> None:
    import derm_ita
    import stone

    frame = pd.read_csv(path)
    ita_scores, ita_types, stone_scores = [], [], []
    for uri in frame["image_uri"]:
        from PIL import Image

        with Image.open(uri) as im:
            ita = float(derm_ita.get_ita(im.convert("RGB")))
        ita_scores.append(-ita)
        ita_types.append(float(derm_ita.get_kinyanjui_groh_type(ita)) if np.isfinite(ita)
                         else np.nan)
        result = stone.process(uri, image_type="color", return_report_image=False)
        faces = result.get("faces") or []
        label = faces[0].get("tone_label") if faces else None
        # labels CA … CK index the "perla" palette from darkest (CA) to lightest (CK):
        # darkness = 12 − index, so that a higher score means darker, as Fitzpatrick
        stone_scores.append(12.0 - (ord(label[-1]) - ord("A") + 1) if label else np.nan)
    frame["derm-ita_score"], frame["derm-ita"] = ita_scores, ita_types
    frame["stone_score"], frame["stone"] = stone_scores, np.nan
    frame.to_csv(path, index=False)
    print(f"added derm-ita and stone to {path}")


def table(path: Path, out: Path | None) -> None:
    from scipy.stats import spearmanr

    frame = pd.read_csv(path)
    y = frame["fitzpatrick"].to_numpy(int)
    report = {}
    print(f"{len(frame)} Fitzpatrick17k validation photos with a dermatologist's type")
    print(f"{'method':<10} {'ρ':>6} {'±1':>6} {'exact':>6}   within ±1 by type I … VI")
    for m in METHODS:
        if f"{m}_score" not in frame:
            continue
        score = frame[f"{m}_score"].to_numpy(float)
        ok = np.isfinite(score)
        rho = float(spearmanr(score[ok], y[ok]).statistic)
        entry = {"n": int(ok.sum()), "spearman": rho}
        line = f"{m:<10} {rho:>6.3f}"
        if m in frame and frame[m].notna().any():
            t = frame[m].to_numpy(float)
            good = np.isfinite(t)
            within = np.abs(t - y) <= 1
            entry["within_1"] = float(within[good].mean())
            entry["exact"] = float((t == y)[good].mean())
            entry["within_1_by_type"] = {str(k): float(within[good & (y == k)].mean())
                                         for k in range(1, 7)}
            line += f" {entry['within_1']:>6.1%} {entry['exact']:>6.1%}   " + " / ".join(
                f"{v:.0%}" for v in entry["within_1_by_type"].values())
        else:
            line += f" {'—':>6} {'—':>6}   (ordinal scale of its own)"
        report[m] = entry
        print(line)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("measure", "tools", "table"))
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--router", type=Path, default=Path("models/router"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.step == "measure":
        measure(args.csv, args.router)
    elif args.step == "tools":
        tools(args.csv)
    else:
        table(args.csv, args.out)


if __name__ == "__main__":
    main()
