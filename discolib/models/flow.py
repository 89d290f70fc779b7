"""RAFT optical flow (torchvision's ``raft_large``), the flow network Disco v5.7 runs on Video Input frames.

Disco loads ``raft-things.pth`` (RAFT trained on FlyingChairs + FlyingThings) and runs 20 refinement iterations;
torchvision's ``Raft_Large_Weights.C_T_V1`` is that checkpoint ported, so it is the default here.

* :func:`load_raft`: the real weights, from discolib's models folder, torch hub's cache, or downloaded once from
  download.pytorch.org (never when ``HF_HUB_OFFLINE`` is set). Weights that cannot be had raise
  :class:`RaftWeightsUnavailable` (a :class:`~discolib.errors.WeightsUnavailable`); with ``random_ok``
  (``models.random_weights``) the same architecture with fixed random weights is used instead, with a
  :class:`~discolib.models.load.RandomWeightsWarning` -- its flow is meaningless, so runs are smoke tests only.
* :func:`random_raft`: that random model, built in-process from a fixed seed (what the tests use).

Convention of every flow here: ``flow[:, 0]`` / ``flow[:, 1]`` are the x / y displacement in pixels of each pixel
of ``image1`` to where it is in ``image2``: ``image1(p) ~ image2(p + flow(p))``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from discolib.errors import WeightsUnavailable
from discolib.models.hub import models_dir, torchvision_state_dict

__all__ = ["RaftFlow", "RaftWeightsUnavailable", "load_raft", "random_raft", "DISCO_RAFT_WEIGHTS", "DISCO_RAFT_ITERS"]

#: torchvision's port of ``raft-things.pth``, the checkpoint Disco v5.7 loads.
DISCO_RAFT_WEIGHTS = "C_T_V1"
#: Disco's ``get_flow(..., iters=20)``.
DISCO_RAFT_ITERS = 20

_MIN_SIDE = 128


class RaftWeightsUnavailable(WeightsUnavailable):
    """RAFT's weights are not on this machine and cannot be downloaded (offline or network failure)."""


class RaftFlow(torch.nn.Module):
    """A RAFT network as a flow estimator: ``flow = raft(image1, image2)``.

    Args:
        model: a torchvision RAFT model (``raft_large`` or ``raft_small``), in eval mode.
        num_flow_updates: refinement iterations (Disco: 20).

    Images ``(B, 3, H, W)`` in [0, 1], any size: they are padded (edge replicate, as RAFT's own ``InputPadder``) to
    multiples of 8, at least 128, and the flow cropped back. Returns the flow ``(B, 2, H, W)`` in pixels, float32.
    """

    def __init__(self, model: torch.nn.Module, num_flow_updates: int = DISCO_RAFT_ITERS) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.num_flow_updates = int(num_flow_updates)

    @torch.no_grad()
    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        h, w = image1.shape[-2:]
        # Multiples of 8, and at least 128: RAFT's correlation pyramid halves the 1/8-size features three times.
        ph, pw = max(_MIN_SIDE - h, (-h) % 8), max(_MIN_SIDE - w, (-w) % 8)
        # Split the padding evenly (RAFT's "sintel" padder) so the flow's centre stays put.
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        param = next(self.model.parameters())
        # RAFT takes [-1, 1] (Disco feeds 0..255 to the original, which rescales to [-1, 1] itself).
        x1 = F.pad(image1.to(param) * 2 - 1, pad, mode="replicate")
        x2 = F.pad(image2.to(param) * 2 - 1, pad, mode="replicate")
        flow = self.model(x1, x2, num_flow_updates=self.num_flow_updates)[-1]
        return flow[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w].float()



def _weights_enum(name: str, small: bool):  # -> torchvision WeightsEnum member
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    enum = Raft_Small_Weights if small else Raft_Large_Weights
    try:
        return enum[name]
    except KeyError:
        raise WeightsUnavailable(
            f"RAFT weights {name!r} are not one of torchvision's ({', '.join(m.name for m in enum)})",
            reason="unknown weights",
        ) from None


def _state_dict(url: str) -> dict[str, torch.Tensor]:
    """The checkpoint at ``url`` (:func:`~discolib.models.hub.torchvision_state_dict`, folder ``raft``).
    Raises RaftWeightsUnavailable when absent and offline or the download fails."""
    hint = f"Put {url.rsplit('/', 1)[-1]} (from {url}) in {models_dir() / 'raft'}, or pick animation.video_flow_method farneback or dis (no weights)"
    return torchvision_state_dict(url, "raft", what="RAFT weights", hint=hint, error=RaftWeightsUnavailable)


def _build(small: bool) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    return raft_small(weights=None) if small else raft_large(weights=None)


def random_raft(
    device: torch.device | str = "cpu", *, seed: int = 0, small: bool = False, num_flow_updates: int = DISCO_RAFT_ITERS
) -> RaftFlow:
    """RAFT with random weights drawn from ``seed`` (the global RNG is left as it was): right shapes, meaningless
    flow. For tests and smoke runs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build(small)
    return RaftFlow(model, num_flow_updates).to(device)


def load_raft(
    device: torch.device | str = "cpu",
    *,
    weights: str = DISCO_RAFT_WEIGHTS,
    small: bool = False,
    num_flow_updates: int = DISCO_RAFT_ITERS,
    random_ok: bool = False,
) -> RaftFlow:
    """RAFT with torchvision's ``weights`` (default: the port of Disco's ``raft-things.pth``), on ``device``.

    Raises:
        RaftWeightsUnavailable: the weights cannot be had here and ``random_ok`` is off.
    """
    member = _weights_enum(weights, small)
    try:
        state = _state_dict(member.url)
    except RaftWeightsUnavailable as exc:
        if not random_ok:
            raise
        from discolib.models.load import RandomWeightsWarning  # load.py is the home of the fallback's warning

        warnings.warn(
            f"RAFT optical flow: real weights unavailable ({exc.reason}); using RANDOM weights "
            "(models.random_weights is on): the flow, and so the video warp, is meaningless",
            RandomWeightsWarning,
            stacklevel=2,
        )
        return random_raft(device, small=small, num_flow_updates=num_flow_updates)
    model = _build(small)
    model.load_state_dict(state)
    return RaftFlow(model, num_flow_updates).to(device)
