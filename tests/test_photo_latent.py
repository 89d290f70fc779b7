"""The learned fill of ``animate_photo`` (``fill="latent"``) with the offline tiny latent model (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import discolib
from discolib.io.images import load_photo
from discolib.io.video import count_video_frames
from discolib.models.load import load_latent
from discolib.run.photo import latent_inpaint


@pytest.fixture
def photo(tmp_path):
    v, u = np.mgrid[0:40, 0:48]
    img = np.stack([u * 5, v * 6, (u + v) * 2], -1).astype(np.uint8)
    img[12:28, 16:32] = (240, 40, 30)
    path = tmp_path / "photo.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path / "cache"))


def test_latent_fill_repaints_only_what_the_layer_made_up(photo, tmp_path) -> None:
    """fill="latent" with the offline tiny latent model: the background layer's made-up pixels are repainted by
    masked img2img once; the photo's own pixels (and so every unrevealed pixel of every frame) stay exact."""
    comps = load_latent("tiny-latent", torch.device("cpu"), torch.float32)
    image = load_photo(photo)
    mask = torch.zeros(1, 1, *image.shape[-2:], dtype=torch.bool)
    mask[..., 5:17, 9:30] = True
    out = latent_inpaint(comps, image, mask, steps=4)
    keep = ~mask.expand_as(image)
    assert torch.equal(out[keep], image[keep])
    assert (out[~keep] != image[~keep]).float().mean() > 0.9
    result = discolib.animate_photo(photo, tmp_path / "lat.mp4", camera="pan", seconds=0.25, fps=8,
                                    depth_model="constant", fill="latent", latent_model="tiny-latent", latent_steps=3)
    assert result.fill == "latent" and count_video_frames(result.video) == 2
