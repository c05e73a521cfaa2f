import numpy as np
import pytest
import torch
from torch import nn

from dermsight.evaluate.explain import (
    ImageOnly,
    cam_target_layer,
    energy_in_mask,
    energy_share,
    grad_cam,
    pointing_game,
    pointing_hit,
)


class _Toy(nn.Module):
    """Class 0 = mean red, class 1 = mean green, through one 1x1 conv "block": Grad-CAM of
    class 0 is the red channel, so the heat map's peak is where the red is."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0
            conv.weight[1, 1] = 1.0
        self.backbone.blocks = nn.Sequential(conv)
        self.seen_meta = None

    def forward(self, image, meta=None):
        self.seen_meta = meta
        logits = self.backbone.blocks(image).mean(dim=(2, 3))
        if meta is not None:
            logits = logits + 0.0 * meta[:, :2]
        return {"diagnosis": logits}


def _image_with_red_square(top, left, size=8, hw=32):
    x = torch.zeros(1, 3, hw, hw)
    x[0, 0, top:top + size, left:left + size] = 1.0
    x[0, 1] = 0.3  # uniform green: no spatial information
    return x


def _square_mask(top, left, size=8, hw=32):
    m = np.zeros((hw, hw), bool)
    m[top:top + size, left:left + size] = True
    return m


def test_pointing_game_on_a_constructed_case_with_a_known_answer():
    model = _Toy().eval()
    images = torch.cat([_image_with_red_square(4, 4), _image_with_red_square(20, 18)])
    meta = torch.ones(2, 3)
    cams = grad_cam(model, images, meta, targets=[0, 0])
    assert cams.shape == (2, 32, 32)
    assert model.seen_meta is not None and model.seen_meta.shape == (2, 3)  # bound metadata
    right = [_square_mask(4, 4), _square_mask(20, 18)]
    wrong = [_square_mask(20, 18), _square_mask(4, 4)]
    assert pointing_game(cams, right) == 1.0
    assert pointing_game(cams, wrong) == 0.0
    assert energy_in_mask(cams, right) > 0.95
    assert energy_in_mask(cams, wrong) < 0.05
    # parameters keep their requires_grad flags and no gradient is left behind
    assert all(p.grad is None for p in model.parameters())


def test_pointing_hit_and_energy_known_answers():
    cam = np.zeros((4, 4))
    cam[1, 2] = 1.0
    cam[3, 3] = 0.5
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    assert pointing_hit(cam, mask)
    assert energy_share(cam, mask) == pytest.approx(1 / 1.5)
    assert not pointing_hit(cam, ~mask)
    assert np.isnan(energy_share(np.zeros((4, 4)), mask))
    with pytest.raises(ValueError, match="one shape"):
        pointing_hit(cam, mask[:2])


def test_image_only_wrapper_checks_rows():
    wrap = ImageOnly(_Toy()).bind(torch.ones(3, 2))
    with pytest.raises(ValueError, match="3 rows for 1 images"):
        wrap(torch.zeros(1, 3, 8, 8))
    assert ImageOnly(_Toy()).bind(torch.zeros(1, 0)).meta is None


def test_target_layer_is_the_last_block_of_a_timm_backbone():
    from dermsight.models import create_model

    model = create_model("dermnet", backbone="efficientnet_lite0", num_classes=3,
                         pretrained=False, input_size=32)
    assert cam_target_layer(model) is model.backbone.blocks[-1]
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    assert cam_target_layer(plain) is plain[2]
