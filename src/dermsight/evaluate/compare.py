"""`dermsight compare`: runs and evaluation reports side by side.

Each argument is a ``report.json``, an evaluation folder holding one, or a run folder: a run
folder contributes every ``eval-*/report.json`` in it, or its training ``report.json`` (the
validation metrics) when it has not been evaluated. Only numbers already in the reports are
shown (a training report has no ECE, coverage or group gap: those cells stay empty).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dermsight.errors import ConfigError

COLUMNS = ["run", "split", "n", "accuracy", "balanced_accuracy", "f1_macro", "auroc_macro",
           "ece_after", "coverage", "worst_group_gap", "gap_attribute"]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read report {path}: {exc}") from None


def find_reports(target: str | Path) -> list[tuple[Path, dict]]:
    """``[(report path, report)]`` for one argument (see the module docstring)."""
    path = Path(target)
    if path.is_file():
        return [(path, _read(path))]
    if not path.is_dir():
        raise ConfigError(f"no run, evaluation folder or report.json at {path}")
    evals = sorted(path.glob("eval-*/report.json"))
    if evals:
        return [(p, _read(p)) for p in evals]
    if (path / "report.json").is_file():
        return [(path / "report.json", _read(path / "report.json"))]
    raise ConfigError(f"{path} holds no report.json and no eval-*/report.json: evaluate it "
                      "first (`dermsight evaluate --run ...`)")


def summary_row(path: Path, report: dict) -> dict:
    """One table row of a report (evaluation or training)."""
    m = report.get("metrics", {})
    is_eval = "calibration" in report
    run = report.get("run_name") or (path.parent.parent.name if is_eval else path.parent.name)
    row = {"run": run, "split": report.get("split"),
           "n": report.get("n", report.get("n_val")),
           **{k: m.get(k) for k in ("accuracy", "balanced_accuracy", "f1_macro",
                                    "auroc_macro")},
           "ece_after": report.get("calibration", {}).get("ece_after"),
           "coverage": report.get("conformal", {}).get("coverage"),
           "worst_group_gap": None, "gap_attribute": None}
    if is_eval:
        row["split"] = f"{report.get('source')}/{report.get('split')}"
    gaps = {a: r["max_gap"] for a, r in report.get("fairness", {}).items()
            if r.get("max_gap") is not None}
    if gaps:
        attr = max(gaps, key=gaps.get)
        row["worst_group_gap"], row["gap_attribute"] = gaps[attr], attr
    return row


def compare_reports(targets: list[str | Path]) -> pd.DataFrame:
    """The comparison table, one row per report, columns :data:`COLUMNS`."""
    if not targets:
        raise ConfigError("name at least one run folder or report.json to compare")
    rows = [summary_row(p, r) for t in targets for p, r in find_reports(t)]
    return pd.DataFrame(rows, columns=COLUMNS)


def format_table(table: pd.DataFrame) -> str:
    """A fixed-width text table (numbers to 3 decimals, empty cells as '–')."""
    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "–"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    header = ["run", "split", "n", "acc", "bal_acc", "F1", "AUROC", "ECE", "coverage",
              "worst_gap", "gap_by"]
    cells = [[cell(v) for v in row] for row in table[COLUMNS].itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
