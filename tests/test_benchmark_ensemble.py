"""benchmarks/ensemble.py: members aligned on image_id, the mean scored, mismatches named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import metrics

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ensemble.py"
CLASSES = ["a", "b", "c"]


def _predictions(path: Path, probs: np.ndarray, labels: list[str], ids: list[str]) -> Path:
    table = pd.DataFrame({"image_id": ids, "label": labels})
    for k, c in enumerate(CLASSES):
        table[c] = probs[:, k]
    table["prediction"] = [CLASSES[k] for k in probs.argmax(1)]
    table["prediction_set"] = table["prediction"]
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True)


def test_mean_of_members_aligned_on_image_id(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"img{i}" for i in range(n)]
    y = np.arange(n) % 3
    labels = [CLASSES[k] for k in y]
    p1 = rng.dirichlet(np.ones(3), n)
    p2 = rng.dirichlet(np.ones(3), n)
    first = _predictions(tmp_path / "r1" / "eval-x-val" / "predictions.csv", p1, labels, ids)
    order = rng.permutation(n)  # the second member lists the photos in another order
    _predictions(tmp_path / "r2" / "eval-x-val" / "predictions.csv", p2[order],
                 [labels[i] for i in order], [ids[i] for i in order])
    out = tmp_path / "ens.json"
    done = _run(first, tmp_path / "r2", "--eval", "eval-x-val", "--resamples", "50",
                "--out", out)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["member"] for r in rows][1:] == ["r2", "mean of 2"]
    mean = (p1 + p2) / 2
    assert rows[-1]["accuracy"] == metrics.accuracy(y, mean)
    assert rows[-1]["auroc_macro"] == metrics.auroc_macro(y, mean)
    assert rows[1]["balanced_accuracy"] == metrics.balanced_accuracy(y, p2)
    lo, hi = rows[-1]["accuracy_gain_ci95"]
    assert lo <= hi


def test_mismatched_members_are_named(tmp_path):
    probs = np.full((4, 3), 1 / 3)
    a = _predictions(tmp_path / "a.csv", probs, ["a", "b", "c", "a"], ["1", "2", "3", "4"])
    b = _predictions(tmp_path / "b.csv", probs, ["a", "b", "c", "b"], ["1", "2", "3", "4"])
    c = _predictions(tmp_path / "c.csv", probs, ["a", "b", "c", "a"], ["1", "2", "3", "5"])
    done = _run(a, b)
    assert done.returncode != 0 and "labels differ" in done.stderr and "b.csv" in done.stderr
    done = _run(a, c)
    assert done.returncode != 0 and "other photos" in done.stderr and "c.csv" in done.stderr
    done = _run(a, tmp_path / "nothing")
    assert done.returncode != 0 and "no predictions" in done.stderr
