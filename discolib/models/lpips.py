"""LPIPS perceptual distance (Zhang et al. 2018, v0.1), the init / frames loss of Disco v5.7.

Disco builds ``lpips.LPIPS(net='vgg')`` once and adds ``lpips_model(x_in, init).sum() * init_scale`` to its guidance
loss (``init_scale`` for an init image or Perlin init, ``frames_scale`` on every animation frame). The same metric,
built from its two parts:

* the backbone: torchvision's ImageNet VGG16 (or AlexNet) convolutional features, cut after the five ReLUs LPIPS
  reads. Its weights come from discolib's models folder, torch hub's cache, or are downloaded once from
  download.pytorch.org (never when ``HF_HUB_OFFLINE`` is set); as :mod:`discolib.models.flow` does for RAFT.
* the learned linear heads (one non-negative 1x1 weight vector per layer), which ship inside the ``lpips`` package.

``d(x, y) = sum_l mean_hw( sum_c w_lc * (f̂_l(x) - f̂_l(y))_c² )`` with ``f̂_l`` the layer-``l`` features divided by
their channel-wise L2 norm (plus 1e-10), on inputs in [-1, 1] shifted and scaled to the ImageNet statistics.

Weights that cannot be had raise :class:`LpipsWeightsUnavailable`; with ``random_ok`` (``models.random_weights``) a
backbone with fixed random weights is used instead, with a :class:`~discolib.models.load.RandomWeightsWarning`.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor, nn

from discolib.errors import WeightsUnavailable, one_line
from discolib.models.hub import models_dir, torchvision_state_dict

__all__ = ["LPIPS_NETS", "Lpips", "LpipsWeightsUnavailable", "lpips_heads", "load_lpips", "random_lpips"]

Net = Literal["vgg", "alex"]

#: Backbones: torchvision layer list (conv channels, "M" max-pool), the indices of the ReLUs LPIPS reads, and the
#: torchvision checkpoint (the one ``torchvision.models.vgg16/alexnet(pretrained=True)`` loads).
LPIPS_NETS: dict[str, dict[str, object]] = {
    "vgg": {
        "taps": (3, 8, 15, 22, 29),
        "url": "https://download.pytorch.org/models/vgg16-397923af.pth",
    },
    "alex": {
        "taps": (1, 4, 7, 9, 11),
        "url": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    },
}

# The ImageNet statistics mapped into [-1, 1] space (LPIPS v0.1's ScalingLayer constants).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


class LpipsWeightsUnavailable(WeightsUnavailable):
    """The LPIPS backbone's (or heads') weights are not on this machine and cannot be had."""


def _features(net: Net) -> nn.Sequential:
    """torchvision's ``vgg16().features`` / ``alexnet().features`` layer for layer (same indices, so the same
    state-dict keys), up to the last ReLU LPIPS reads."""
    layers: list[nn.Module] = []
    if net == "vgg":
        cin = 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
    else:
        layers = [
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        ]  # fmt: skip
    return nn.Sequential(*layers)


class Lpips(nn.Module):
    """LPIPS distance ``lpips(x, y)`` of ``(B, 3, H, W)`` images in [-1, 1] -> ``(B, 1, 1, 1)`` (as the package).

    Args:
        net: ``"vgg"`` (Disco) or ``"alex"``.
        heads: per tapped layer, the ``(C_l,)`` non-negative channel weights (see :func:`lpips_heads`).

    The module is in eval mode with gradients off for its parameters; gradients flow to the inputs.
    """

    def __init__(self, net: Net, heads: list[Tensor]) -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net must be one of {', '.join(LPIPS_NETS)}, got {net!r}")
        self.net = net
        self.taps = tuple(LPIPS_NETS[net]["taps"])  # type: ignore[arg-type]
        self.features = _features(net)
        if len(heads) != len(self.taps):
            raise ValueError(f"LPIPS {net} needs {len(self.taps)} head weight vectors, got {len(heads)}")
        for i, w in enumerate(heads):
            self.register_buffer(f"head{i}", w.detach().float().reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def layer_features(self, x: Tensor) -> list[Tensor]:
        """The tapped ReLU outputs of ``(B, 3, H, W)`` images in [-1, 1] (ImageNet-scaled first)."""
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance per batch item, ``(B, 1, 1, 1)``; ``y`` may be ``(1, 3, H, W)`` (broadcast)."""
        y = y.to(device=x.device, dtype=x.dtype).expand_as(x)
        b = x.shape[0]
        total = x.new_zeros(b, 1, 1, 1)
        # One backbone pass over both images (half the kernel launches of two passes).
        for i, f in enumerate(self.layer_features(torch.cat([x, y]))):
            # Unit-length feature vectors per pixel, then the heads weigh each channel's squared difference.
            f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + _EPS)
            diff = (f[:b] - f[b:]).square()
            total = total + (diff * getattr(self, f"head{i}")).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        return total



def lpips_heads(net: Net) -> list[Tensor]:
    """The learned linear heads of LPIPS v0.1 for ``net``, from the ``lpips`` package's own weight file."""
    try:
        from importlib.resources import files

        path = files("lpips") / "weights" / "v0.1" / f"{net}.pth"
        with path.open("rb") as fh:
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise LpipsWeightsUnavailable(
            f"the LPIPS heads ship with the 'lpips' package, which is not installed ({one_line(exc, 120)}). "
            "Install it (pip install lpips), or set guidance.init_loss to mse",
            reason="lpips package missing",
        ) from exc
    return [state[f"lin{i}.model.1.weight"].flatten() for i in range(len(LPIPS_NETS[net]["taps"]))]  # type: ignore[arg-type]


def _backbone_state(net: Net) -> dict[str, Tensor]:
    """torchvision's ImageNet checkpoint of ``net`` (:func:`~discolib.models.hub.torchvision_state_dict`, folder
    ``lpips``)."""
    url = str(LPIPS_NETS[net]["url"])
    hint = f"Put {url.rsplit('/', 1)[-1]} (from {url}) in {models_dir() / 'lpips'}, or set guidance.init_loss to mse (no weights)"
    return torchvision_state_dict(
        url, "lpips", what=f"LPIPS ({net}) backbone weights", hint=hint, error=LpipsWeightsUnavailable
    )


def random_lpips(device: torch.device | str = "cpu", *, net: Net = "vgg", seed: int = 0) -> Lpips:
    """LPIPS with the package's heads and a backbone with random weights drawn from ``seed`` (the global RNG is left
    as it was). A distance of the right form with meaningless features: for tests and smoke runs."""
    heads = lpips_heads(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Lpips(net, heads)
    return model.to(device)


def load_lpips(device: torch.device | str = "cpu", *, net: Net = "vgg", random_ok: bool = False) -> Lpips:
    """LPIPS with the real backbone and heads, on ``device`` (Disco: ``lpips.LPIPS(net='vgg')``).

    Raises:
        LpipsWeightsUnavailable: the weights cannot be had here and ``random_ok`` is off.
    """
    try:
        heads = lpips_heads(net)
        state = _backbone_state(net)
    except LpipsWeightsUnavailable as exc:
        if not random_ok or exc.reason == "lpips package missing":
            raise
        from discolib.models.load import RandomWeightsWarning  # load.py is the home of the fallback's warning

        warnings.warn(
            f"LPIPS init loss: real weights unavailable ({exc.reason}); using a RANDOM backbone "
            "(models.random_weights is on): the init / frames loss is not perceptual",
            RandomWeightsWarning,
            stacklevel=2,
        )
        return random_lpips(device, net=net)
    model = Lpips(net, heads)
    prefix = "features."
    # The checkpoint also holds the classifier and the final pool's (absent) layers: keep the tapped features'.
    kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and int(k.split(".")[1]) < len(model.features)}
    model.features.load_state_dict(kept)
    return model.to(device)
