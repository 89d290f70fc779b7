"""Whether the weights a render needs are on this machine, decided before anything loads or downloads.

:func:`weights_problem` is what the notebooks' render cell and the panel ask first: ``None`` when the render can get
its weights (each is local, cached or built in-process, or downloads are possible), else ONE line naming what is
missing and what to do, instead of a long traceback from deep inside a loader. Nothing is downloaded and no model is
built; the names are resolved by the loaders' own rules (:func:`~discolib.models.hub.catalogue_entry`,
:class:`~discolib.models.clip.ClipSpec`, :data:`~discolib.models.latent.LATENT_PRESETS`, the depth presets), and
the look-ups honour ``models.models_root`` (:func:`~discolib.models.hub.use_models_root`).

A name that is no model at all (a typo, a bad path) is not reported here: validation and the loader name it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from discolib.errors import InputError
from discolib.io.inputs import expand_path
from discolib.models.hub import _source, catalogue_entry, models_dir, offline_env, use_models_root

if TYPE_CHECKING:
    from discolib.config.settings import Settings

__all__ = ["MissingWeights", "downloads_possible", "missing_weights", "weights_problem"]

#: Names built in-process, checked here before importing the loaders' modules: the tiny presets then cost no import
#: of diffusers, transformers or open_clip (seconds, and the panel checks in a thread while a cell may import them).
#: tests/test_availability.py checks them against the loaders' own: the tiny ``LATENT_PRESETS``,
#: ``depth.TINY_DEPTH_PRESET`` and ``clip.TINY_MODELS`` (every tiny CLIP name, and no open_clip one, starts so).
TINY_LATENT = "tiny-latent"
TINY_LATENTS = (  # the second: the photo fill's tiny inpainting UNet; then one per model family
    TINY_LATENT, "tiny-latent-inpaint", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-kolors", "tiny-hunyuandit",
)
TINY_DEPTH = "tiny-depth-anything"
TINY_CLIP_PREFIX = "tiny-"
#: How long the one TCP connect to the hub may take before downloads count as impossible.
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class MissingWeights:
    """One model whose weights are not on this machine: ``what`` (the setting's value) and ``source`` (where it
    would come from: a hub id or a URL)."""

    what: str
    source: str

    def __str__(self) -> str:
        return self.what if self.source in ("", self.what) else f"{self.what} ({self.source})"


# ---------------------------------------------------------------------------------------------- per kind


def _is_local(name: str, *, folder: bool) -> bool:
    """``name`` is an existing local file (``folder=False``) or folder, ``~`` expanded."""
    try:
        path = expand_path(name, setting="model")
    except InputError:
        return False
    return path.is_dir() if folder else path.is_file()


def _hub_cached(repo_id: str, filename: str | None = None) -> bool:
    """The hub repo (or one file of it) is in the local Hugging Face cache; never touches the network."""
    import huggingface_hub

    try:
        if filename is None:
            huggingface_hub.snapshot_download(repo_id, local_files_only=True)
            return True
        found = huggingface_hub.try_to_load_from_cache(repo_id, filename)
    except Exception:  # not cached, or not a valid repo id: either way nothing to load here
        return False
    return isinstance(found, str)


def _checkpoint(name: str) -> MissingWeights | None:
    """Disco's diffusion or secondary model: ``tiny``, a file, or a catalogue name (the models folder)."""
    if name == "tiny" or _is_local(name, folder=False):
        return None
    try:
        entry = catalogue_entry(name)
    except InputError:
        return None  # no catalogue name: the loader's own error says so
    if (models_dir() / entry["file"]).is_file():
        return None
    return MissingWeights(entry["name"], _source(entry))


def _latent(name: str, fast_vae: str) -> list[MissingWeights]:
    out: list[MissingWeights] = []
    if name not in TINY_LATENTS:
        from discolib.models.latent_presets import LATENT_PRESETS  # plain data, no diffusers import

        model_id = LATENT_PRESETS[name].model_id if name in LATENT_PRESETS else name
        local = _is_local(model_id, folder=True) or _is_local(model_id, folder=False)  # a folder or one .safetensors
        if model_id not in TINY_LATENTS and not local and not _hub_cached(model_id):
            out.append(MissingWeights(name, model_id))
    if fast_vae and fast_vae != "tiny" and not _is_local(fast_vae, folder=True) and not _hub_cached(fast_vae):
        out.append(MissingWeights(f"fast_vae {fast_vae}", ""))
    return out


def _single_file_config(model: str, config: str) -> MissingWeights | None:
    """A ``.safetensors`` latent model's configs (``models.latent_config``, or the repo its family defaults to)."""
    if not _is_local(model, folder=False):
        return None
    if not config:
        from discolib.models.single_file import default_single_file_config  # diffusers: only for a real file

        try:
            config = default_single_file_config(expand_path(model, setting="models.latent_model"))
        except InputError:
            return None  # an unreadable file: the loader's error names it
    if _is_local(config, folder=True) or _hub_cached(config):
        return None
    return MissingWeights(f"models.latent_config {config}", config)


def _lora(lora: str) -> MissingWeights | None:
    """``models.latent_lora``: a local file or folder, a hub repo, or one file of a repo (owner/name/file)."""
    if _is_local(lora, folder=True) or _is_local(lora, folder=False):
        return None
    parts = lora.split("/")
    repo, filename = "/".join(parts[:2]), ("/".join(parts[2:]) or None)
    return None if _hub_cached(repo, filename) else MissingWeights(f"models.latent_lora {lora}", repo)


def _translator(model_id: str) -> MissingWeights | None:
    """The prompt translation model (``prompts.translate``): a local folder or a hub repo."""
    if _is_local(model_id, folder=True) or _hub_cached(model_id):
        return None
    return MissingWeights(f"prompts.translate {model_id}", model_id)


def _clip(model_id: str) -> MissingWeights | None:
    """A CLIP model: tiny, a local weights file, an ``hf-hub:`` repo or an open_clip tag (hub file or URL)."""
    if model_id.strip().startswith(TINY_CLIP_PREFIX):
        return None  # a tiny model, or no model at all (ClipSpec's error then names it)
    from discolib.models.clip import ClipSpec  # open_clip: only for a real CLIP model

    try:
        spec = ClipSpec.parse(model_id)
    except InputError:
        return None
    if spec.kind in ("tiny", "local-dir"):
        return None  # (a local-dir: folder is checked when it loads)
    if spec.kind == "hf-hub":
        repo = spec.name[len("hf-hub:") :]
        return None if _hub_cached(repo) else MissingWeights(f"CLIP {model_id}", repo)
    if spec.is_local_file:
        return None  # load_clip names a missing file itself
    import open_clip
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import _get_safe_alternatives

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained or "") or {}
    if cfg.get("file"):
        return None
    if cfg.get("hf_hub"):  # open_clip prefers the hub when it has the repo (huggingface_hub is always installed here)
        # open_clip's own reading: "org/name/file" or "org/name/" (its default file), safetensors first.
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        if any(_hub_cached(repo, n) for n in (*_get_safe_alternatives(filename), filename)):
            return None
        return MissingWeights(f"CLIP {model_id}", repo)
    url = str(cfg.get("url", ""))
    if url and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file():  # open_clip's URL cache
        return None
    return MissingWeights(f"CLIP {model_id}", url)


def _depth(name: str) -> MissingWeights | None:
    if name in ("", "constant", TINY_DEPTH) or name.startswith("constant:"):
        return None
    if _is_local(name, folder=True) or _hub_cached(name):
        return None
    return MissingWeights(f"depth model {name}", "")


def missing_weights(settings: Settings) -> list[MissingWeights]:
    """The models ``settings`` need whose weights are not on this machine (local, cached or built in-process).

    Needed: guided mode's diffusion model, secondary model (when used) and CLIP ensemble; latent mode's model, its
    ``fast_vae`` and, with ``latent.clip_scale`` > 0, the CLIP ensemble; a 3D animation's depth model(s) when it
    warps with depth. With ``models.random_weights`` nothing is missing (the loaders fall back to random weights).
    """
    m = settings.models
    if m.random_weights:
        return []
    out: list[MissingWeights] = []
    with use_models_root(m.models_root):
        clip_needed = settings.image.mode == "guided" or settings.latent.clip_scale > 0
        if settings.image.mode == "guided":
            out.append(_checkpoint(m.diffusion_model))
            if m.use_secondary_model:
                out.append(_checkpoint(m.secondary_model))
        else:
            out.extend(_latent(m.latent_model, m.fast_vae))
            out.append(_single_file_config(m.latent_model, m.latent_config))
            if settings.prompts.translate:
                out.append(_translator(settings.prompts.translate))
            if m.latent_lora:
                out.append(_lora(m.latent_lora))
        if clip_needed:
            out.extend(_clip(name) for name in m.clip_models)
        anim = settings.animation
        if anim.animation_mode == "3D" and anim.use_depth_warping:
            out.append(_depth(m.depth_model))
            if m.depth_model_2:
                out.append(_depth(m.depth_model_2))
    return [w for w in out if w is not None]


# ---------------------------------------------------------------------------------------------- network


def downloads_possible() -> bool:
    """False when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set, or a TCP connect to the hub (``$HF_ENDPOINT``,
    default huggingface.co, port 443) fails within :data:`CONNECT_TIMEOUT_S` seconds."""
    if offline_env(("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def weights_problem(settings: Settings) -> str | None:
    """One line when the render cannot get its weights (some are missing and downloads are impossible), else None.

    For example: ``offline and not downloaded: sd-1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5), depth model
    depth-anything/Depth-Anything-V2-Small-hf: download them on a machine with internet (see README 'Models'), or
    pick the tiny-latent preset``.
    """
    missing = missing_weights(settings)
    if not missing or downloads_possible():
        return None
    tiny = "tiny" if settings.image.mode == "guided" else "tiny-latent"
    return (
        f"offline and not downloaded: {', '.join(str(w) for w in missing)}: download them on a machine with "
        f"internet (see README 'Models'), set models.random_weights to render with random weights, "
        f"or pick the {tiny} preset"
    )
