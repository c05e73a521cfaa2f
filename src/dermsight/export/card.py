"""MODEL_CARD.md from model.json: data, metrics, skin-tone figures, intended use, limits."""

from __future__ import annotations

import math
from pathlib import Path

from dermsight import DISCLAIMER
from dermsight.config import tta_or_none
from dermsight.io import atomic_write_text
from dermsight.phototype import DESCRIPTIONS


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f} %"


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{float(x):.{digits}f}"


def render_card(info: dict) -> str:
    """The model card (Markdown) of a model.json dict."""
    m = info.get("metrics") or {}
    parity = info.get("parity") or {}
    data = info.get("data") or {}
    conf = info.get("conformal") or {}
    names = info.get("display_names") or {}
    kind = DESCRIPTIONS.get(info.get("photo_type"), "a photo of a skin lesion")
    lines = [
        f"# Model card: {info['name']} ({info['version']})", "",
        f"> **Not medical advice.** {DISCLAIMER}", "",
        "## What it does", "",
        f"Classifies {kind} into {len(info['classes'])} classes: "
        + ", ".join(f"`{c}` ({names.get(c, c)})" for c in info["classes"]) + ". "
        "It also scores photo quality (lighting head, retake tips) and estimates skin tone "
        "(ITA, Monk) from the pixels."
        + (f" Served behind the photo-type router, it answers only photos routed (or sent) as "
           f"`{info['photo_type']}`." if info.get("photo_type") else ""), "",
        "## Data", "",
        f"- source: `{data.get('source')}` (root `{data.get('root')}`, options "
        f"`{data.get('source_options')}`)",
        f"- training images: {info.get('n_train')}, validation images: {info.get('n_val')} "
        f"(split: {info.get('metrics_split')})",
        f"- input: {info['input_size'][0]}×{info['input_size'][1]} px, preprocessing "
        f"`{info['preprocess']}`",
    ]
    meta = info.get("metadata")
    if meta:
        lines.append(f"- metadata used (optional at inference): "
                     f"{', '.join(meta['schema']['fields'])}")
    lines += [
        f"- exported by dermsight {info['dermsight_version']} on {info['created']} from "
        f"`{info['source_run']}`", "",
        "## Validation metrics (PyTorch model, validation split)", "",
        "| metric | value |", "|---|---|",
        *[f"| {k} | {_num(v)} |" for k, v in m.items()], "",
    ]
    paths = info.get("metadata_paths")
    if paths:
        fused, alone = paths["with_metadata"], paths["without_metadata"]
        lines += [f"## With and without the patient's metadata ({paths.get('split')} split)", "",
                  f"From `{paths.get('source')}` (`dermsight evaluate`): each path with its own "
                  "temperature and conformal thresholds; the engine picks the path by whether "
                  "a photo comes with metadata.", "",
                  "| metric | with metadata | photo alone |", "|---|---|---|",
                  *[f"| {k} | {_num(fused.get(k))} | {_num(alone.get(k))} |" for k in fused], ""]
    levels = info.get("label_levels")
    if levels:
        lines += ["## At the coarser levels (validation split)", "",
                  f"From `{levels.get('source')}` (`benchmarks/label_levels.py`): the "
                  "probabilities summed over each level of the dataset's label hierarchy and "
                  "over near-synonym classes, each scored as a classifier of its own.", "",
                  "| level | accuracy (95 % CI) | macro-F1 | accuracy, Fitzpatrick 1-2 / 3-4 / 5-6 "
                  "|", "|---|---|---|---|"]
        for level, row in levels["levels"].items():
            a = row["all"]
            lines.append(f"| {level} | {_num(a['accuracy'])} ({_num(a['accuracy_ci'][0])}–"
                         f"{_num(a['accuracy_ci'][1])}) | {_num(a['f1_macro'])} | "
                         + " / ".join(_num(row[g]["accuracy"]) for g in ("1-2", "3-4", "5-6"))
                         + " |")
        lines.append("")
    groups = info.get("skin_tone_groups")
    if groups and isinstance(groups.get("groups"), dict):
        lines += ["## By skin tone", ""]
        if groups.get("attribute"):
            lines += [f"Grouped by `{groups['attribute']}`, {groups.get('split')} split "
                      f"(`{groups.get('source')}`), 95 % CIs from "
                      f"{groups.get('n_resamples')} bootstrap resamples; groups under "
                      f"{groups.get('min_n')} images are marked *small*.", ""]
        lines += ["| group | n | accuracy (95 % CI) | macro-F1 (95 % CI) |", "|---|---|---|---|"]
        for g, row in groups["groups"].items():
            ci_a = row.get("accuracy_ci95") or [None, None]
            ci_f = row.get("f1_macro_ci95") or [None, None]
            small = " (*small*)" if row.get("small") else ""
            lines.append(f"| {g}{small} | {row.get('n')} | {_num(row.get('accuracy'))} "
                         f"({_num(ci_a[0])}–{_num(ci_a[1])}) | {_num(row.get('f1_macro'))} "
                         f"({_num(ci_f[0])}–{_num(ci_f[1])}) |")
        ci = groups.get("max_gap_ci95") or [None, None]
        pair = " and ".join(str(g) for g in groups.get("max_gap_groups") or [])
        lines += ["", f"Largest {groups.get('gap_metric')} gap: {_num(groups.get('max_gap'))} "
                  f"between {pair} (95 % CI {_num(ci[0])}–{_num(ci[1])}).", ""]
    else:
        lines += ["## By skin tone", "",
                  "No per-skin-tone figures for this run (its dataset has no skin-type labels, "
                  "or `groups.json` was not computed). Dermoscopy datasets such as HAM10000 are "
                  "mostly light skin: **performance on darker skin is unknown**.", ""]
    lines += [
        "## Calibration and prediction sets", "",
        f"- temperature: {_num(info.get('temperature'))} ({info.get('temperature_source')})",
    ]
    if conf:
        lines.append(f"- conformal sets: {conf.get('method', '').upper()}, target coverage "
                     f"{_pct(conf.get('coverage'))}, threshold {_num(conf.get('threshold'))} "
                     f"({conf.get('source')})")
        if conf.get("mode") == "group" and conf.get("group_thresholds"):
            lines.append(f"- thresholds per skin-tone group (`{conf.get('group_by')}`, chosen per "
                         "photo from the tone measured on it; the marginal threshold serves "
                         "photos whose tone cannot be measured): "
                         + ", ".join(f"{g} {_num(t)}"
                                     for g, t in conf["group_thresholds"].items()))
        mode = tta_or_none((conf.get("fitted_on") or {}).get("tta"))
        if mode not in (None, "none"):
            lines.append(f"- note: temperature and threshold were fitted on {mode}-TTA "
                         "probabilities; the exported model runs without TTA")
        if conf.get("val_coverage") is not None:
            lines.append(f"- validation coverage {_pct(conf['val_coverage'])}, mean set size "
                         f"{_num(conf.get('val_mean_set_size'), 2)} (as calibrated)")
        if conf.get("exported_val_coverage") is not None:
            lines.append(f"- the exported model (fp32, no TTA) on the validation split: coverage "
                         f"{_pct(conf['exported_val_coverage'])}, mean set size "
                         f"{_num(conf.get('exported_val_mean_set_size'), 2)}")
    lines += [
        "", "## Export and parity", "",
        f"- ONNX opset {info.get('opset')}; in this folder: "
        + ", ".join(f"{k} `{v['path']}`" for k, v in info["files"].items()
                    if v.get("included", True))
        + ("" if info["files"]["fp32"].get("included", True) else
           " (the fp32 model is left out; its sha256 is in model.json)"),
        f"- parity on {parity.get('n_val_images', 'no')} validation images: ONNX fp32 vs "
        f"PyTorch max |Δprobability| {_num(parity.get('fp32_max_abs_prob_diff'), 7)}; "
        f"int8 top-1 agreement with fp32 {_pct(parity.get('int8_top1_agreement'))} "
        f"(accuracy fp32 {_pct(parity.get('fp32_accuracy'))}, int8 "
        f"{_pct(parity.get('int8_accuracy'))})",
    ]
    if info.get("quantization"):
        q = info["quantization"]
        lines.append(f"- int8: {q.get('format')} static quantisation, per-channel "
                     f"{q.get('per_channel')}, {q.get('n_calibration_images')} training images "
                     f"for calibration; kept in float: {', '.join(q.get('keep_fp32', []))}")
    rebuild = info.get("rebuild") or {}
    if rebuild:
        lines += ["", "## Re-create this folder", "", "```bash"]
        if rebuild.get("train"):
            lines.append(f"{rebuild['train']}   # the weights (same seed, same metrics)")
        lines += [rebuild["export"], "```"]
    lines += [
        "", "## Intended use", "",
        "Research and education: exploring how a skin-lesion classifier behaves, with its "
        "uncertainty (prediction sets), photo-quality feedback and skin-tone estimate shown. "
        "Not for diagnosis, triage or any clinical decision.", "",
        "## Limitations", "",
        "- Trained on one dataset; photos from other cameras, lighting or populations may be "
        "classified worse, and conditions outside the classes above are forced into one of them.",
        "- Calibration and coverage hold only for data like the validation split.",
        "- The skin-tone estimate is computed from pixels and is affected by lighting; it is not a "
        "Fitzpatrick type assessment.",
        "- Grad-CAM heat maps show where the model looked, not why, and are coarse (the "
        f"backbone's last feature map: {math.ceil(info['input_size'][0] / 32)}×"
        f"{math.ceil(info['input_size'][1] / 32)} cells).",
        "", f"**{DISCLAIMER}**", "",
    ]
    return "\n".join(lines)


def write_card(path: Path, info: dict) -> None:
    atomic_write_text(path, render_card(info))
