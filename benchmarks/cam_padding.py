"""Does the backbone's padding shift Grad-CAM? The ImageNet EfficientNet-Lite0 weights were
trained with TensorFlow's "same" padding (more at the bottom/right); timm's `efficientnet_lite0`
pads symmetrically, `tf_efficientnet_lite0` as TensorFlow does. Same weights, same photo
(scikit-image's `chelsea`, 224 x 288), Grad-CAM of the predicted class on the last block:
where is the map's centre of mass, for the photo and for its mirror image (mirrored back)?

    python benchmarks/cam_padding.py
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from skimage import data as skimage_data

from dermsight.models.backbones import create_backbone


def centroid(cam: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[: cam.shape[0], : cam.shape[1]]
    total = cam.sum()
    return float((ys * cam).sum() / total), float((xs * cam).sum() / total)


def main() -> None:
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float() / 255
    x = (F.interpolate(img[None], size=(224, 288), mode="bilinear") - 0.5) / 0.5
    print("| backbone | class | centroid (y, x), photo | centroid (y, x), mirrored |")
    print("|---|---|---|---|")
    for name in ("efficientnet_lite0", "tf_efficientnet_lite0"):
        model = create_backbone(name, pretrained=True, num_classes=1000).eval()
        cls = int(model(x).argmax())
        cams = []
        for flip in (False, True):
            xi = x.flip(-1) if flip else x
            cam = GradCAM(model=model, target_layers=[model.blocks[-1]])(
                input_tensor=xi, targets=[ClassifierOutputTarget(cls)])[0]
            cams.append(centroid(cam[:, ::-1] if flip else cam))
        print(f"| {name} | {cls} | {cams[0][0]:.1f}, {cams[0][1]:.1f} "
              f"| {cams[1][0]:.1f}, {cams[1][1]:.1f} |")


if __name__ == "__main__":
    main()
