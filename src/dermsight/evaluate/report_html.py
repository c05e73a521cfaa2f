"""The self-contained HTML evaluation report: one file, figures embedded as base64 PNG, no
scripts, styles inline, so it opens offline and can be mailed. It formats ``report.json``;
nothing is recomputed here."""

from __future__ import annotations

import base64
import html
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.6em 1em;margin:1em 0}
.note{color:#555;font-size:.9em}.small{color:#999}img{max-width:100%;border:1px solid #eee}
"""


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _ci(ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "–"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(folder: Path, name: str, alt: str) -> str:
    path = Path(folder) / name
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def render(report: dict, figures: Path) -> str:
    """The report as one HTML page; ``figures`` is the folder holding the PNGs."""
    m, cal, conf = report["metrics"], report["calibration"], report["conformal"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>dermsight evaluation: {html.escape(report['run_name'])} on "
        f"{html.escape(report['source'])} {html.escape(report['split'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation of <code>{html.escape(report['run_name'])}</code> on "
        f"{html.escape(report['source'])} / {html.escape(report['split'])}</h1>",
        f"<div class='warn'><b>Not medical advice.</b> {html.escape(report['disclaimer'])}</div>",
        f"<p class='note'>{report['n']} images scored; classes: "
        f"{html.escape(', '.join(report['classes']))}; "
        f"test-time augmentation: {html.escape(str(report['tta']))}; "
        f"dermsight {html.escape(report['dermsight_version'])}, {report['created']}. "
        f"Data: {html.escape(report['data']['origin'])}.</p>",
    ]
    for note in report.get("notes", []):
        parts.append(f"<div class='warn'>{html.escape(note)}</div>")

    parts.append("<h2>Metrics</h2>")
    parts.append(_table(["accuracy", "top-3 accuracy", "balanced accuracy", "macro-F1",
                         "macro AUROC", "ECE (calibrated)"],
                        [[_f(m["accuracy"]), _f(m["top3_accuracy"]),
                          _f(m["balanced_accuracy"]), _f(m["f1_macro"]), _f(m["auroc_macro"]),
                          _f(cal["ece_after"])]]))
    rows = [[html.escape(c), _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), r["support"],
             _f(r["auroc"])] for c, r in m["per_class"].items()]
    parts.append(_table(["class", "precision", "recall", "F1", "support", "AUROC"], rows))
    if m["most_confused"]:
        parts.append("<p>Most confused (true → predicted): " + "; ".join(
            f"{html.escape(p['true'])} → {html.escape(p['predicted'])} ({p['count']}, "
            f"{p['share_of_true']:.0%} of {html.escape(p['true'])})"
            for p in m["most_confused"]) + "</p>")
    light = m["lighting"]
    if light.get("available") and light.get("n_known"):
        parts.append(f"<p>Photo-quality head: accuracy {_f(light['accuracy'])}, AUROC "
                     f"{_f(light['auroc'])} on {light['n_known']} photos with a known quality "
                     f"label ({light['n_poor']} poorly lit).</p>")
    parts.append(_img(figures, "confusion.png", "confusion matrix"))
    ov = report.get("overlap_with_train", {})
    if ov.get("available") and ov.get("n_group_seen"):
        parts.append("<h3>Overlap with training</h3>")
        parts.append(f"<p>{ov['n_group_seen']} of {ov['n']} images ({ov['share_seen']:.0%}) "
                     f"show a lesion/patient also in the run's training split "
                     f"({ov['n_same_image']} are the same image).</p>")
        rows = [[name, ov[name]["n"], _f(ov[name]["accuracy"]),
                 _f(ov[name]["balanced_accuracy"]), _f(ov[name]["f1_macro"]),
                 _f(ov[name]["auroc_macro"])] for name in ("seen", "unseen") if name in ov]
        if rows:
            parts.append(_table(["lesion/patient in train", "n", "accuracy",
                                 "balanced accuracy", "macro-F1", "macro AUROC"], rows))

    parts.append("<h2>Calibration</h2>")
    fitted = cal["fitted_on"]
    reused = ", re-used from calibration.json" if cal["reused"] else ""
    parts.append(f"<p>Temperature T = {cal['temperature']:.3f} fitted on the run's validation "
                 f"split ({fitted.get('n')} images{reused}). ECE (15 bins) "
                 f"{cal['ece_before']:.4f} before → {cal['ece_after']:.4f} after.</p>")
    if cal.get("cross_fit"):
        cf = cal["cross_fit"]
        parts.append(f"<p class='note'>Cross-fitted (fit on one half, scored on the other, "
                     f"{cf.get('repeats', 1)} seeded splits): ECE after "
                     f"{cf['ece_after']:.4f}.</p>")
    parts.append(_img(figures, "reliability.png", "reliability diagram"))
    for attr, groups in cal.get("by_group", {}).items():
        parts.append(f"<p>ECE by {html.escape(attr)}: " + ", ".join(
            f"{html.escape(str(g))} {_f(v['ece'])} (n={v['n']}{', small' if v['small'] else ''})"
            for g, v in groups.items()) + "</p>")

    parts.append("<h2>Prediction sets (conformal)</h2>")
    parts.append(f"<p>{conf['method'].upper()} sets, {conf['mode']} calibration, target "
                 f"coverage {conf['target']:.0%}: empirical coverage {conf['coverage']:.3f}, "
                 f"mean set size {conf['mean_set_size']:.2f}.</p>")
    if conf.get("cross_fit"):
        cf = conf["cross_fit"]
        parts.append(f"<p class='note'>Cross-fitted ({cf.get('repeats', 1)} seeded 2-fold "
                     f"splits): coverage {cf['coverage']:.3f}, mean set size "
                     f"{cf['mean_set_size']:.2f}.</p>")
        if cf.get("by_group"):
            rows = [[html.escape(str(g)), v["n"], f"{_f(v['coverage'])} ± "
                     f"{_f(v['coverage_sd'])}", _f(v["mean_set_size"], 2),
                     _f(v["within_2_points"]) if v["n"] >= 50 else
                     "<span class='small'>n&lt;50</span>"] for g, v in cf["by_group"].items()]
            parts.append(f"<p><b>cross-fitted, by {html.escape(cf.get('group_by', 'group'))}"
                         "</b></p>" + _table(["group", "n", "coverage (± sd over splits)",
                                              "mean set size", "within ±2 points"], rows))
    for attr, table in conf["by_attribute"].items():
        rows = [[html.escape(str(g)), v["n"], _f(v["coverage"]), _f(v["mean_set_size"], 2),
                 _f(v["within_2_points"]) if v["n"] >= 50 else "<span class='small'>n&lt;50"
                 "</span>"] for g, v in table.items()]
        parts.append(f"<p><b>{html.escape(attr)}</b></p>" + _table(
            ["group", "n", "coverage", "mean set size", "within ±2 points"], rows))
    if conf.get("examples"):
        parts.append("<p>What a user sees instead of a confident wrong answer:</p><ul>" + "".join(
            f"<li>{html.escape(e['image_id'])}: predicted {html.escape(e['prediction'])}, set "
            f"“{html.escape(e['set'])}” (true: {html.escape(e['label'])}"
            f"{', in the set' if e['label_in_set'] else ', not in the set'})</li>"
            for e in conf["examples"]) + "</ul>")
    parts.append(_img(figures, "conformal_coverage.png", "coverage by group"))

    parts.append("<h2>Fairness</h2>")
    fs = report["fairness_settings"]
    parts.append(f"<p class='note'>95 % percentile bootstrap CIs ({fs['n_resamples']} seeded "
                 f"resamples, seed {fs['seed']}) for {', '.join(fs['bootstrapped'])}; AUROC and "
                 f"ECE per group without CI. Groups with n &lt; {fs['min_n']} are flagged and "
                 "not ranked. The gap is the largest accuracy difference between rankable "
                 "groups, with a paired, group-stratified bootstrap CI.</p>")
    for attr, res in report["fairness"].items():
        rows = [[html.escape(str(g)) + (" <span class='small'>(n&lt;30)</span>"
                                         if r["small"] else ""), r["n"],
                 _f(r["accuracy"]), _ci(r["accuracy_ci95"]), _f(r["balanced_accuracy"]),
                 _ci(r["balanced_accuracy_ci95"]), _f(r["f1_macro"]), _f(r["auroc_macro"]),
                 _f(r["ece"])] for g, r in res["groups"].items()]
        gap = ("no two groups with n ≥ 30" if res["max_gap"] is None else
               f"largest accuracy gap {res['max_gap']:.3f} {_ci(res['max_gap_ci95'])} "
               f"({html.escape(str(res['max_gap_groups'][0]))} vs "
               f"{html.escape(str(res['max_gap_groups'][1]))})")
        parts.append(f"<p><b>{html.escape(attr)}</b>: {gap}</p>" + _table(
            ["group", "n", "accuracy", "95 % CI", "balanced acc.", "95 % CI", "macro-F1",
             "AUROC", "ECE"], rows))
    parts.append(_img(figures, "fairness_accuracy.png", "accuracy by group"))

    parts.append("<h2>Explanations (Grad-CAM)</h2>")
    ex = report["explain"]
    if "skipped" in ex:
        parts.append(f"<p>Skipped ({html.escape(ex['skipped'])}).</p>")
    else:
        parts.append(f"<p>{html.escape(ex['note'])}; target layer "
                     f"<code>{html.escape(ex['target_layer'])}</code>, CAM of the "
                     f"{html.escape(ex['target'])}.</p>")
        if "pointing_game" in ex:
            parts.append(f"<p>Against the lesion masks ({ex['n_with_mask']} images): "
                         f"pointing-game hit rate <b>{ex['pointing_game']:.3f}</b> "
                         f"({html.escape(ex['hit_rule'])}); share of CAM energy inside the "
                         f"mask <b>{ex['energy_in_mask']:.3f}</b> (the mask covers "
                         f"{ex['mask_area']:.1%} of the input on average; a fixed guess at "
                         f"the image centre hits {ex['centre_baseline']:.3f}). The CAM's "
                         f"centre of mass sits {_f(ex['cam_centroid_offset_px'][0], 1)} px "
                         f"below and {_f(ex['cam_centroid_offset_px'][1], 1)} px right of the "
                         f"lesion centroid on average.</p>")
        parts.append(_img(figures, "gradcam.png", "Grad-CAM overlays"))
    parts.append("<h2>Galleries</h2>")
    parts.append(_img(figures, "gallery_confident_wrong.png", "most confident wrong"))
    parts.append(_img(figures, "gallery_unsure_right.png", "least confident right"))
    data = report["data"]
    parts.append("<h2>Data</h2>")
    parts.append(f"<p class='note'>{data['n_scored']} images scored from "
                 f"{html.escape(data['origin'])}; {data['n_unmapped']} with labels outside the "
                 f"model's classes and {data['n_unlabeled']} without a label not scored; "
                 f"{data['n_excluded']} unreadable images excluded. Skin tone measured on the "
                 f"fly: {_f(data['tone_measured_on_the_fly'])}.</p>")
    parts.append(f"<div class='warn'><b>Not medical advice.</b> "
                 f"{html.escape(report['disclaimer'])}</div></body></html>")
    return "\n".join(p for p in parts if p)
