"""The learned fill of ``animate_photo`` (``fill="latent"``) with the offline tiny latent model (random weights)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

import discolib
from discolib.io.images import load_photo
from discolib.io.video import count_video_frames
from discolib.models.load import load_latent
from discolib.run.photo import latent_inpaint
from discolib.samplers.latent import encode_image


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


def test_tiny_inpainting_preset_loads_through_the_real_loading_path() -> None:
    """tiny-latent-inpaint is saved in the diffusers layout and loaded from there: a 9-input-channel UNet whose
    noise and output still have the VAE's 4 latent channels."""
    from discolib.models.latent import LATENT_PRESETS, tiny_latent_folder

    assert "tiny-latent-inpaint" in LATENT_PRESETS
    comps = load_latent("tiny-latent-inpaint", torch.device("cpu"), torch.float32)
    folder = tiny_latent_folder(inpaint=True)
    assert folder != tiny_latent_folder()
    assert (folder / "unet" / "config.json").is_file()
    assert comps.unet.config.in_channels == 9 and comps.unet.config.out_channels == 4
    assert comps.latent_channels == 4 and comps.is_inpainting
    plain = load_latent("tiny-latent", torch.device("cpu"), torch.float32)
    assert plain.latent_channels == 4 and not plain.is_inpainting


def test_inpainting_checkpoint_fill_gets_mask_and_masked_image_and_changes_only_masked_pixels(photo, tmp_path) -> None:
    """With an inpainting UNet every denoiser call gets 9 channels: the scaled latents, the mask (1 = paint) at
    latent size and the masked image's latents; only masked pixels change, and animate_photo runs with it."""
    comps = load_latent("tiny-latent-inpaint", torch.device("cpu"), torch.float32)
    image = load_photo(photo)  # 40 x 48: already a multiple of 8, so the latent grid is 5 x 6
    mask = torch.zeros(1, 1, *image.shape[-2:], dtype=torch.bool)
    mask[..., 5:17, 9:30] = True
    inputs: list[torch.Tensor] = []

    def spy(module, args, kwargs):
        inputs.append((args[0] if args else kwargs["sample"]).detach().clone())

    handle = comps.unet.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        out = latent_inpaint(comps, image, mask, steps=4)
    finally:
        handle.remove()
    assert inputs and all(x.shape == (1, 9, 5, 6) for x in inputs)
    # Nearest-neighbour down-sampling by 8 reads the mask at every 8th pixel: rows 8, 16 and columns 16, 24 paint.
    expected = mask[..., ::8, ::8].float()
    assert expected.sum() == 4
    for x in inputs:
        assert torch.equal(x[:, 4:5], expected)
        assert torch.equal(x[:, 5:], inputs[0][:, 5:])  # the masked image's latents are the same at every step
    assert not torch.equal(inputs[0][:, :4], inputs[-1][:, :4])  # the noisy latents move
    grey = torch.where(mask, torch.full_like(image, 0.5), image)  # diffusers: 0 in the VAE's [-1, 1] where it paints
    assert torch.allclose(inputs[0][:, 5:], encode_image(comps, grey), atol=1e-5)
    keep = ~mask.expand_as(image)
    assert torch.equal(out[keep], image[keep])
    assert (out[~keep] != image[~keep]).float().mean() > 0.9
    result = discolib.animate_photo(photo, tmp_path / "inp.mp4", camera="pan", seconds=0.25, fps=8,
                                    depth_model="constant", fill="latent", latent_model="tiny-latent-inpaint",
                                    latent_steps=3)
    assert result.fill == "latent" and count_video_frames(result.video) == 2


def test_a_render_with_an_inpainting_checkpoint_is_a_one_line_error(tmp_path: pathlib.Path) -> None:
    """A render's latent sampler has no mask to give an inpainting UNet: it says so instead of torch's shape error."""
    from discolib import Settings, apply_preset, render
    from discolib.samplers.latent import LatentSettingError

    s = apply_preset(Settings.defaults("latent"), "tiny-latent")
    s.set("models.latent_model", "tiny-latent-inpaint")
    with pytest.raises(LatentSettingError, match=r"models\.latent_model: 'tiny-latent-inpaint' is an inpainting"):
        render(s, out=tmp_path, progress=False)
