"""Real weights for Disco Diffusion's models: catalogue, local lookup, download, SHA-256 check, loading.

The catalogue (``discolib/data/disco_models.json``) lists each public checkpoint Disco loads: its file name, where
it is published (a Hugging Face repo or a plain URL), its SHA-256 and, for the guided-diffusion UNets, the
hyper-parameters it needs. A checkpoint is looked for, in order:

1. ``local_path=`` when given (a file, or a folder holding the catalogue's file name);
2. the models folder: ``cache_dir=``, else ``$DISCOLIB_MODELS``, else ``~/.cache/discolib/models``;
3. downloaded into the models folder (``huggingface_hub.hf_hub_download`` for hub entries, a streamed HTTP GET
   to a temporary name and an atomic rename for URL entries), unless offline (``HF_HUB_OFFLINE=1``).

Files are verified against the catalogue's SHA-256; a downloaded file that does not match is deleted, a local one
is refused. Checkpoints are read with ``safetensors`` or ``torch.load(weights_only=True)`` only: no pickled code runs.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

import torch

from discolib.errors import InputError

if TYPE_CHECKING:
    from diffusers import UNet2DModel

    from discolib.adm import AdmConfig
    from discolib.secondary import SecondaryDiffusionImageNet2

__all__ = [
    "CheckpointError",
    "UnknownModelError",
    "catalogue_entry",
    "fetch_checkpoint",
    "load_catalogue",
    "load_disco_unet",
    "load_module_strict",
    "load_secondary_model",
    "load_state_dict",
    "model_names",
    "models_dir",
    "sha256_file",
]

MODELS_ENV = "DISCOLIB_MODELS"
SECONDARY_MODEL = "secondary_model_imagenet_2"
_TRUE = {"1", "ON", "YES", "TRUE"}


class CheckpointError(InputError):
    """A checkpoint is missing, corrupt, or does not match the architecture it is loaded into."""


class UnknownModelError(CheckpointError):
    """A model name that is not in the catalogue."""


# ---------------------------------------------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------------------------------------------


@functools.cache
def _read_catalogue() -> dict[str, Any]:
    text = resources.files("discolib").joinpath("data/disco_models.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_catalogue() -> dict[str, Any]:
    """The packaged catalogue of Disco's checkpoints (a fresh copy; edit it freely)."""
    return copy.deepcopy(_read_catalogue())


def model_names(catalogue: Mapping[str, Any] | None = None) -> list[str]:
    """Names of the catalogue's models, sorted."""
    cat = catalogue if catalogue is not None else _read_catalogue()
    return sorted(cat.get("models", {}))


def catalogue_entry(name: str, catalogue: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The catalogue entry for ``name`` (a catalogue key or the checkpoint's file name).

    The returned dict has ``name`` (the catalogue key) added and a named ADM shape (``"adm": "community_256"``)
    replaced by the shape's dict.

    Raises:
        UnknownModelError: ``name`` is not in the catalogue; the message lists close names.
    """
    cat = catalogue if catalogue is not None else _read_catalogue()
    models: Mapping[str, Any] = cat.get("models", {})
    key = name if name in models else None
    if key is None:
        key = next((k for k, e in models.items() if e.get("file") == name), None)
    if key is None:
        candidates = list(models) + [e["file"] for e in models.values() if "file" in e]
        close = difflib.get_close_matches(name, candidates, n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}: {hint}known models: {', '.join(sorted(models))} "
            "(or pass the path of a checkpoint file)"
        )
    entry = copy.deepcopy(dict(models[key]))
    entry["name"] = key
    if not isinstance(entry.get("file"), str) or not entry["file"]:
        raise CheckpointError(f"catalogue entry {key!r} has no 'file' name")
    adm = entry.get("adm")
    if isinstance(adm, str):
        if not isinstance(cat.get(adm), Mapping):
            raise CheckpointError(f"catalogue entry {key!r} names ADM shape {adm!r}, which the catalogue lacks")
        entry["adm"] = copy.deepcopy(dict(cat[adm]))
    return entry


def models_dir() -> Path:
    """The models folder: ``$DISCOLIB_MODELS`` or ``~/.cache/discolib/models`` (not created here)."""
    env = os.environ.get(MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "discolib" / "models"


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_size`` pieces (constant memory for multi-GB checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors onto the CPU.

    ``.safetensors`` with safetensors; ``.pt``/``.pth``/``.ckpt``/``.bin`` with
    ``torch.load(map_location="cpu", weights_only=True)``, so a file holding anything but tensors and plain
    containers is refused rather than executed. A ``{"state_dict": {...}}`` wrapper and a DataParallel ``module.``
    prefix are removed.

    Raises:
        CheckpointError: missing file, unknown extension, unreadable or non-tensor content.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(p), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"cannot read safetensors file {p}: {err}") from err
    elif suffix in {".pt", ".pth", ".ckpt", ".bin"}:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError, RuntimeError (zip), EOFError: all mean "unreadable"
            raise CheckpointError(
                f"cannot read {p} with torch.load(weights_only=True): {err}. "
                "Only files of tensors are accepted (no pickled code is run)."
            ) from err
    else:
        raise CheckpointError(
            f"unknown checkpoint format {suffix or '(no extension)'!r} for {p}: expected .safetensors, .pt or .pth"
        )
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{p} does not hold a state dict (found {type(sd).__name__})")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{p}: entries that are not tensors: {bad[:5]}")
    out = {str(k): v for k, v in sd.items()}
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def load_module_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    """``module.load_state_dict`` with every missing, unexpected or mis-shaped key named in one CheckpointError."""
    target = module.state_dict()
    problems: list[str] = []
    for k, t in target.items():
        if k not in state_dict:
            problems.append(f"missing key {k!r} (expected shape {tuple(t.shape)})")
        elif tuple(state_dict[k].shape) != tuple(t.shape):
            problems.append(
                f"key {k!r}: expected shape {tuple(t.shape)}, found {tuple(state_dict[k].shape)}"
            )
    extra = sorted(set(state_dict) - set(target))
    if extra:
        problems.append(f"unexpected keys: {extra[:8]}" + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
    if problems:
        raise CheckpointError(f"{what}: the checkpoint does not match the architecture:\n  " + "\n  ".join(problems[:12]))
    module.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------------------------------------------------------
# Locating / downloading
# ---------------------------------------------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def _parse_hf_repo(text: str) -> tuple[str, str]:
    """``"owner/name"`` -> (repo_id, "model"); ``"spaces/owner/name (a Space)"`` -> (``owner/name``, "space")."""
    token = text.strip().split()[0] if text.strip() else ""
    repo_type = "model"
    for prefix, kind in (("spaces/", "space"), ("datasets/", "dataset")):
        if token.startswith(prefix):
            token, repo_type = token[len(prefix) :], kind
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", token):
        raise CheckpointError(f"catalogue hf_repo {text!r} is not a Hugging Face repo id")
    return token, repo_type


def _source(entry: Mapping[str, Any]) -> str:
    if "hf_repo" in entry:
        repo_id, repo_type = _parse_hf_repo(entry["hf_repo"])
        base = "https://huggingface.co/" + ("spaces/" if repo_type == "space" else "") + repo_id
        return f"{base}/resolve/main/{entry['file']}"
    if "url" in entry:
        return str(entry["url"])
    return "(no download source in the catalogue)"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _verified(path: Path, expected: str) -> bool:
    """True when a verification marker written by us still describes this exact file."""
    try:
        data = json.loads(_marker(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return data == {"sha256": expected, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _mark_verified(path: Path, sha: str) -> None:
    st = path.stat()
    try:
        _marker(path).write_text(json.dumps({"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    except OSError:
        pass  # a read-only folder only costs a re-hash next time


def _check_sha(path: Path, entry: Mapping[str, Any], *, downloaded: bool, folder: Path | None) -> None:
    expected = str(entry.get("sha256", "")).lower()
    if not expected:
        return
    if folder is not None and _verified(path, expected):
        return
    found = sha256_file(path)
    if found == expected:
        if folder is not None:
            _mark_verified(path, found)
        return
    if downloaded:
        path.unlink(missing_ok=True)
        fate = "The download was deleted."
    else:
        fate = "The file was left in place but is refused; replace it with a good copy (or pass verify=False)."
    raise CheckpointError(
        f"SHA-256 mismatch for {entry.get('name', path.name)!r} ({path}): expected {expected}, found {found}. {fate}"
    )


def _missing_message(entry: Mapping[str, Any], folder: Path, reason: str) -> str:
    target = folder / entry["file"]
    sha = f" (SHA-256 {entry['sha256']})" if entry.get("sha256") else ""
    return (
        f"checkpoint {entry['name']!r} is not available: {reason}. Download {entry['file']}{sha} by hand from "
        f"{_source(entry)} and put it at {target} "
        f"(or set {MODELS_ENV} to the folder that holds it, or pass local_path=...)."
    )


def _download_url(url: str, dest: Path) -> Path:
    """Stream ``url`` to a temporary file beside ``dest`` and rename it into place only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=60) as resp:  # noqa: S310 - catalogue URLs only
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import EntryNotFoundError

        errors.append(EntryNotFoundError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def fetch_checkpoint(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_path: str | os.PathLike[str] | None = None,
    verify: bool = True,
    catalogue: Mapping[str, Any] | None = None,
) -> Path:
    """Path of the catalogue checkpoint ``name`` on this machine, downloading it if needed.

    Args:
        name: catalogue key (``"512x512_diffusion_uncond_finetune_008100"``) or the file name.
        cache_dir: the models folder; default ``$DISCOLIB_MODELS`` or ``~/.cache/discolib/models``.
        local_path: a file to use instead (or a folder holding the file under its catalogue name).
        verify: check the catalogue's SHA-256 (a successful check is remembered beside files in the models
            folder, keyed by size and mtime, so big files are hashed once).
        catalogue: a catalogue dict to use instead of the packaged one (tests, private mirrors).

    Raises:
        UnknownModelError: ``name`` is not in the catalogue (the message suggests close names).
        CheckpointError: SHA-256 mismatch (naming both hashes); or the file is absent and cannot be downloaded
            (offline or network failure): the message names the file, its source and the exact place to put it.
    """
    entry = catalogue_entry(name, catalogue)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else models_dir()
    if local_path is not None:
        p = Path(local_path).expanduser()
        if p.is_dir():
            p = p / entry["file"]
        if not p.is_file():
            raise CheckpointError(f"local_path for {entry['name']!r} does not exist: {p}")
        if verify:
            _check_sha(p, entry, downloaded=False, folder=None)
        return p

    dest = folder / entry["file"]
    if dest.is_file():
        if verify:
            _check_sha(dest, entry, downloaded=False, folder=folder)
        return dest
    if _offline():
        raise CheckpointError(_missing_message(entry, folder, f"it is not in {folder} and HF_HUB_OFFLINE is set"))
    if "hf_repo" not in entry and "url" not in entry:
        raise CheckpointError(_missing_message(entry, folder, "the catalogue has no download source for it"))
    try:
        if "hf_repo" in entry:
            import huggingface_hub

            repo_id, repo_type = _parse_hf_repo(entry["hf_repo"])
            folder.mkdir(parents=True, exist_ok=True)
            got = Path(
                huggingface_hub.hf_hub_download(
                    repo_id=repo_id, filename=entry["file"], repo_type=repo_type, local_dir=folder
                )
            )
        else:
            got = _download_url(str(entry["url"]), dest)
    except _network_errors() as err:
        raise CheckpointError(_missing_message(entry, folder, f"the download failed ({err})")) from err
    if verify:
        _check_sha(got, entry, downloaded=True, folder=folder)
    return got


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


def _entry_or_missing_file(text: str, catalogue: Mapping[str, Any] | None) -> dict[str, Any]:
    """Catalogue entry for ``text``; a missing-file error instead when ``text`` is clearly a path."""
    try:
        return catalogue_entry(text, catalogue)
    except UnknownModelError:
        if os.sep in text or "/" in text or Path(text).suffix.lower() in {".pt", ".pth", ".safetensors", ".ckpt"}:
            raise CheckpointError(f"checkpoint file not found: {Path(text).expanduser()}") from None
        raise


def load_disco_unet(
    name_or_path: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    config: AdmConfig | Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    catalogue: Mapping[str, Any] | None = None,
) -> UNet2DModel:
    """A Disco main model (guided-diffusion UNet) as a diffusers ``UNet2DModel``.

    Args:
        name_or_path: a catalogue name (hyper-parameters from the catalogue) or a checkpoint file. A file whose name
            is a catalogue file name uses the catalogue's hyper-parameters; any other file has them inferred from its
            weights (:func:`discolib.adm.infer_adm_config`), which needs ``image_size``.
        image_size: training resolution of an unknown file (256 or 512 for Disco's models).
        config: hyper-parameters to use instead (an ``AdmConfig`` or a guided-diffusion dict).
        cache_dir, verify, catalogue: as :func:`fetch_checkpoint`.
        dtype, device: of the returned model.

    Returns:
        The model in eval mode; ``model(x, t).sample`` is (B, 6, H, W): eps then the variance interpolation.
    """
    from discolib.adm import AdmConfig, adm_to_diffusers, infer_adm_config

    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    entry: dict[str, Any] | None = None
    if path.is_file():
        try:
            entry = catalogue_entry(path.name, catalogue)
        except UnknownModelError:
            entry = None
    else:
        entry = _entry_or_missing_file(text, catalogue)
        path = fetch_checkpoint(entry["name"], cache_dir=cache_dir, verify=verify, catalogue=catalogue)
    if entry is not None and "adm" not in entry and config is None:
        raise CheckpointError(
            f"{entry['name']!r} is not a guided-diffusion UNet"
            + (" (it is the secondary model: use load_secondary_model)" if entry["name"] == SECONDARY_MODEL else "")
        )
    sd = load_state_dict(path)
    if config is not None:
        cfg = config if isinstance(config, AdmConfig) else AdmConfig.from_dict(config)
    elif entry is not None:
        cfg = AdmConfig.from_dict(entry["adm"])
    else:
        if image_size is None:
            raise CheckpointError(
                f"{path.name} is not in the catalogue: pass image_size= (its training resolution, e.g. 256 or 512) "
                "so that its hyper-parameters can be read from the weights, or config=..."
            )
        cfg = infer_adm_config(sd, image_size)
    model = adm_to_diffusers(sd, cfg, dtype=dtype)
    del sd
    return model.to(device) if device is not None else model


def load_secondary_model(
    path_or_name: str | os.PathLike[str] = SECONDARY_MODEL,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    catalogue: Mapping[str, Any] | None = None,
) -> SecondaryDiffusionImageNet2:
    """Disco's secondary model from its catalogue name or a file; the base width is read from the weights."""
    from discolib.secondary import SecondaryDiffusionImageNet2

    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if not path.is_file():
        entry = _entry_or_missing_file(text, catalogue)
        path = fetch_checkpoint(entry["name"], cache_dir=cache_dir, verify=verify, catalogue=catalogue)
    model = SecondaryDiffusionImageNet2.from_state_dict(load_state_dict(path))
    model = model.to(dtype=dtype)
    return model.to(device) if device is not None else model
