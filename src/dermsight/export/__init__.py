"""`dermsight export`: a trained run folder → a self-describing, torch-free model folder.

``export_model(run, out)`` writes:

- ``model.onnx``: fp32 graph (:mod:`dermsight.export.graph`: inputs ``image`` / ``meta`` /
  ``has_meta``; outputs ``diagnosis_logits``, ``lighting_logit``, ``embedding``,
  ``feature_map``, ``class_gradients``);
- ``model.int8.onnx``: static QDQ int8 (:mod:`dermsight.export.quantize`), calibrated on
  training images;
- ``model.json`` (:mod:`dermsight.export.info`; schema :class:`dermsight.schemas.ModelJson`):
  everything serving needs (classes, preprocessing, metadata encoder and form schema,
  temperature, conformal threshold, metrics, parity figures, sha256 of the files);
- ``MODEL_CARD.md``.

Parity is measured at export time on the run's validation images (ONNX fp32 vs PyTorch: max
|Δprobability|; int8 vs fp32: top-1 agreement) and recorded in model.json and the card.
"""

from dermsight.export.model import ExportResult, export_model

__all__ = ["ExportResult", "export_model"]
