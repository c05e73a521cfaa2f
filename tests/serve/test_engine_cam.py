"""Grad-CAM without torch equals pytorch-grad-cam's GradCAM on the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermsight.serve.engine import Engine, grad_cam_maps

pytestmark = pytest.mark.slow


def test_engine_cam_matches_pytorch_grad_cam(tiny_run, tiny_model):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from dermsight.evaluate.explain import ImageOnly
    from dermsight.train.checkpoint import load_run

    loaded = load_run(tiny_run)
    engine = Engine.load(tiny_model, precision="fp32")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    images[0][16:40, 20:44] = (90, 40, 30)  # a dark blob on the first
    metadata = [{"age": 35, "sex": "male"}, None, {"body_site": "back"}, {"age": 70}]
    clean = [engine._clean_metadata(m, "", True)[0] for m in metadata]
    feeds = engine.feeds(engine.preprocess.batch(images), clean)
    fmap, grads, logits = engine.session.run(
        ["feature_map", "class_gradients", "diagnosis_logits"], feeds)
    targets = logits.argmax(1)
    ours = grad_cam_maps(fmap, grads, targets, engine.preprocess.input_size)

    model = loaded.model
    wrapper = ImageOnly(model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    x = torch.from_numpy(feeds["image"])
    with GradCAM(model=wrapper, target_layers=[model.backbone.bn2]) as cam:
        ref = []
        for i in range(len(images)):  # bind each image's metadata (None = no metadata)
            meta = torch.from_numpy(feeds["meta"][i:i + 1]) if feeds["has_meta"][i] else None
            wrapper.bind(meta)
            ref.append(cam(input_tensor=x[i:i + 1],
                           targets=[ClassifierOutputTarget(int(targets[i]))])[0])
    for a, b in zip(ours, ref):
        if b.std() < 1e-6:  # a flat map: both must be flat
            assert a.std() < 1e-3
            continue
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99


def test_cam_is_returned_at_the_image_size(tiny_model):
    engine = Engine.load(tiny_model)
    rng = np.random.default_rng(1)
    for shape in ((64, 64), (90, 130), (150, 70)):
        img = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
        pred = engine.predict([img], cam=True)[0]
        assert pred.cam.shape == shape and pred.cam.dtype == np.float32
        assert 0.0 <= pred.cam.min() and pred.cam.max() <= 1.0
