"""Real weights for Disco Diffusion's models: catalogue, local lookup, download, SHA-256 check, loading.

The catalogue (``discolib/data/disco_models.json``) lists each public checkpoint Disco loads: its file name, where
it is published (a Hugging Face repo or a plain URL), its SHA-256 and, for the guided-diffusion UNets, the
hyper-parameters it needs. A checkpoint is looked for, in order:

1. ``local_path=`` when given (a file, or a folder holding the catalogue's file name);
2. the models folder: ``cache_dir=``, else :func:`models_dir` (``models.models_root`` inside
   :func:`use_models_root`, else ``$DISCOLIB_MODELS``, else ``models/`` under :func:`cache_root`, by default
   ``~/.cache/discolib/models``);
3. downloaded into the models folder (``huggingface_hub.hf_hub_download`` for hub entries, a streamed HTTP GET
   to a temporary name and an atomic rename for URL entries), unless offline (``HF_HUB_OFFLINE=1``).

Files are verified against the catalogue's SHA-256; a downloaded file that does not match is deleted, a local one
is refused. A file given by path whose name is a catalogue entry's file name is verified the same way. A successful
check is remembered in this process and, for files in the models folder, in a ``<file>.sha256.json`` marker that
records the file's size, mtime, ctime and inode: a marker is trusted only while all of them still match the file,
so a replaced or edited file (even one whose mtime was set back) is hashed again.

Checkpoints are read with ``safetensors`` or ``torch.load(weights_only=True)`` only: no pickled code runs. A file
that holds pickled code or objects is refused with a one-line error naming the file and the objects it would have
called (:func:`pickled_globals` reads them statically, without unpickling); the other model loaders
(:mod:`discolib.models.clip`, :mod:`discolib.models.depth`, :mod:`discolib.models.latent`) use the same helpers.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import difflib
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from discolib.errors import InputError, WeightsUnavailable, one_line
from discolib.io.files import atomic_path, write_json_atomic
from discolib.io.inputs import loads_json, read_user_text
from discolib.models.state_dict import CheckpointError, sha256_file

__all__ = [
    "CheckpointUnavailable",
    "UnknownModelError",
    "cache_root",
    "catalogue_entry",
    "fetch_checkpoint",
    "load_catalogue",
    "model_names",
    "models_dir",
    "hub_offline",
    "offline_env",
    "use_models_root",
]

#: discolib's one cache folder (checkpoints under ``models/``, the tiny-latent model folder, ...).
CACHE_ENV = "DISCOLIB_CACHE"
#: An explicit models folder, overriding ``cache_root() / "models"`` (kept for existing setups).
MODELS_ENV = "DISCOLIB_MODELS"
SECONDARY_MODEL = "secondary_model_imagenet_2"
#: ``models.models_root`` of the render in progress (set by :func:`use_models_root`); "" = not set.
_MODELS_ROOT: contextvars.ContextVar[str] = contextvars.ContextVar("discolib_models_root", default="")
_TRUE = {"1", "ON", "YES", "TRUE"}


class UnknownModelError(CheckpointError):
    """A model name that is not in the catalogue."""


class CheckpointUnavailable(CheckpointError, WeightsUnavailable):
    """A catalogue checkpoint is not on this machine and cannot be downloaded (offline, no source, network down)."""


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


def cache_root() -> Path:
    """discolib's cache folder: ``$DISCOLIB_CACHE``, else ``$XDG_CACHE_HOME/discolib``, else ``~/.cache/discolib``.

    Not created here.
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "discolib"


def models_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoints folder (not created here): ``root`` when given and not empty, else the folder of the
    enclosing :func:`use_models_root` (``models.models_root``), else ``$DISCOLIB_MODELS``, else
    ``cache_root() / "models"``."""
    chosen = os.fspath(root).strip() if root is not None else ""
    if not chosen:
        chosen = _MODELS_ROOT.get() or os.environ.get(MODELS_ENV, "").strip()
    return Path(chosen).expanduser() if chosen else cache_root() / "models"


@contextlib.contextmanager
def use_models_root(root: str | os.PathLike[str] | None) -> Iterator[Path]:
    """Within the block, checkpoints live in ``root`` and hub snapshots in ``root/hub`` (``models.models_root``).

    Empty or ``None`` changes nothing (``$DISCOLIB_MODELS`` / the caches, as before). :func:`models_dir` reads the
    folder from a context variable (this thread's block); the Hugging Face cache of diffusers, transformers and
    open_clip is ``huggingface_hub.constants.HF_HUB_CACHE``, read by them at each call, so it is set for the block
    and put back after it (process-wide: one render at a time, as the panel and the CLI run them).

    Yields:
        The checkpoints folder in effect.
    """
    chosen = os.fspath(root).strip() if root is not None else ""
    if not chosen:
        yield models_dir()
        return
    folder = Path(chosen).expanduser()
    # Imported here: the catalogue side of this module needs no hub client.
    from huggingface_hub import constants

    token = _MODELS_ROOT.set(str(folder))

    before = constants.HF_HUB_CACHE
    constants.HF_HUB_CACHE = str(folder / "hub")
    try:
        yield folder
    finally:
        constants.HF_HUB_CACHE = before
        _MODELS_ROOT.reset(token)


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------
# Locating / downloading
# ---------------------------------------------------------------------------------------------------------------


def offline_env(names: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> bool:
    """Whether any of the environment variables ``names`` is set to a true value (1, on, yes, true)."""
    return any(os.environ.get(name, "").strip().upper() in _TRUE for name in names)


def _offline() -> bool:
    return offline_env()


def hub_offline() -> bool:
    """Whether the Hugging Face hub is offline for the loaders: huggingface_hub's own flag (read from the environment
    when it was imported) or ``HF_HUB_OFFLINE`` set since."""
    from huggingface_hub import constants  # why here: huggingface_hub is imported by the loaders that ask

    return bool(constants.HF_HUB_OFFLINE) or offline_env()


def torchvision_state_dict(
    url: str, folder: str, *, what: str, hint: str, error: type[WeightsUnavailable] = WeightsUnavailable
) -> dict[str, Any]:
    """A torchvision checkpoint (``download.pytorch.org``) as a state dict: from ``models_dir() / folder`` or torch
    hub's cache, else downloaded once into the former (never with ``HF_HUB_OFFLINE`` set), loaded with
    ``weights_only=True``.

    Args:
        url: the checkpoint's URL (torchvision's file names carry the first hex digits of the SHA-256, checked).
        folder: the models folder's subfolder for it.
        what: the weights, for messages (``"RAFT weights"``).
        hint: what the user can do instead, appended to the error.
        error: the :class:`~discolib.errors.WeightsUnavailable` subclass raised (``reason`` "offline" or
            "download failed").
    """
    import torch  # the catalogue side of this module needs no torch

    name = url.rsplit("/", 1)[-1]
    ours = models_dir() / folder
    for place in (ours, Path(torch.hub.get_dir()) / "checkpoints"):
        if (place / name).is_file():
            return torch.load(place / name, map_location="cpu", weights_only=True)
    if _offline():
        raise error(f"{what} {name} are not in {ours} and HF_HUB_OFFLINE is set. {hint}", reason="offline")
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=str(ours), map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a hash mismatch is a RuntimeError
        raise error(
            f"{what} {name} could not be downloaded from {url}: {one_line(exc, 200)}. {hint}", reason="download failed"
        ) from exc


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


def _stamp(path: Path) -> dict[str, Any]:
    """What ties a verification to one version of a file: its name, size, mtime, ctime and inode.

    ``os.utime`` can set the mtime back, but not the ctime: any write, replacement or ``utime`` moves the ctime,
    so an edited or swapped file never matches a marker written for the file that was verified.
    """
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


# (resolved path, stamp) -> the SHA-256 found for that version of the file, in this process.
_HASHED: dict[tuple[str, tuple[Any, ...]], str] = {}


def _verified_by_marker(path: Path, expected: str, stamp: Mapping[str, Any]) -> bool:
    """True when a marker beside ``path`` records ``expected`` for exactly this version of the file.

    The marker is read as user input (regular file, at most 4 KB, plain JSON): a FIFO, a huge or a hostile file
    in its place just means "not verified", and the checkpoint is hashed.
    """
    try:
        data = loads_json(read_user_text(_marker(path), setting="checkpoint marker", max_bytes=4096), what="marker")
    except (InputError, OSError):
        return False
    return data == {"sha256": expected, **stamp}


def _mark_verified(path: Path, sha: str, stamp: Mapping[str, Any]) -> None:
    try:
        write_json_atomic(_marker(path), {"sha256": sha, **stamp})
    except OSError:
        pass  # a read-only folder only costs a re-hash next time


def _check_sha(path: Path, entry: Mapping[str, Any], *, downloaded: bool, marker: bool) -> None:
    """Verify ``path`` against the catalogue's SHA-256, hashing it only when no valid record of it exists.

    ``marker``: the file is in the models folder, so a marker beside it may be read and written (nothing is
    written beside a file the user named elsewhere; those are remembered for this process only).
    """
    expected = str(entry.get("sha256", "")).lower()
    if not expected:
        return
    try:
        stamp = _stamp(path)
        key = (str(path.resolve()), tuple(stamp.values()))
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"cannot read {path}: {one_line(err)}") from None
    if _HASHED.get(key) == expected:
        return
    if marker and _verified_by_marker(path, expected, stamp):
        _HASHED[key] = expected
        return
    found = sha256_file(path)
    if found == expected:
        if _stamp(path) == stamp:  # unchanged while it was hashed: the result describes this version
            _HASHED[key] = found
            if marker:
                _mark_verified(path, found, stamp)
        return
    if downloaded:
        path.unlink(missing_ok=True)
        fate = "The download was deleted."
    else:
        fate = (
            "The file was left in place but is refused; replace it with a good copy "
            "(or, if it is a different model on purpose, give it another file name or pass verify=False)."
        )
    raise CheckpointError(
        f"SHA-256 mismatch for {entry.get('name', path.name)!r} ({path}): expected {expected}, found {found}. {fate}"
    )


def _in_folder(path: Path, folder: Path) -> bool:
    """True when ``path``'s own folder is ``folder`` (both resolved), i.e. a marker beside it lands in ``folder``."""
    try:
        return path.absolute().parent.resolve() == folder.expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def _missing_message(entry: Mapping[str, Any], folder: Path, reason: str) -> str:
    target = folder / entry["file"]
    sha = f" (SHA-256 {entry['sha256']})" if entry.get("sha256") else ""
    return (
        f"checkpoint {entry['name']!r} is not available: {reason}. Download {entry['file']}{sha} by hand from "
        f"{_source(entry)} and put it at {target} "
        f"(or set {MODELS_ENV} to the folder that holds it, or {CACHE_ENV} to a cache folder whose models/ "
        "holds it, or pass local_path=...)."
    )


def _download_url(url: str, dest: Path) -> Path:
    """Stream ``url`` to a temporary file beside ``dest`` and rename it into place only when complete."""
    with atomic_path(dest, suffix=".part", mkdir=True) as tmp, open(tmp, "wb") as out:
        with urlopen(url, timeout=60) as resp:  # noqa: S310 - catalogue URLs only
            while chunk := resp.read(1 << 20):
                out.write(chunk)
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
        cache_dir: the models folder; default :func:`models_dir`.
        local_path: a file to use instead (or a folder holding the file under its catalogue name).
        verify: check the catalogue's SHA-256 (a successful check is remembered in this process and, for files in
            the models folder, in a marker keyed by the file's size, mtime, ctime and inode, so big files are
            hashed once).
        catalogue: a catalogue dict to use instead of the packaged one (tests, private mirrors).

    Raises:
        UnknownModelError: ``name`` is not in the catalogue (the message suggests close names).
        CheckpointError: SHA-256 mismatch (naming both hashes).
        CheckpointUnavailable: the file is absent and cannot be downloaded (offline or network failure): the
            message names the file, its source and the exact place to put it.
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
            _check_sha(p, entry, downloaded=False, marker=_in_folder(p, folder))
        return p

    dest = folder / entry["file"]
    if dest.is_file():
        if verify:
            _check_sha(dest, entry, downloaded=False, marker=True)
        return dest
    if _offline():
        raise CheckpointUnavailable(
            _missing_message(entry, folder, f"it is not in {folder} and HF_HUB_OFFLINE is set"), reason="offline"
        )
    if "hf_repo" not in entry and "url" not in entry:
        raise CheckpointUnavailable(
            _missing_message(entry, folder, "the catalogue has no download source for it"), reason="no source"
        )
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
        reason = f"the download failed ({one_line(err, 300)})"
        raise CheckpointUnavailable(_missing_message(entry, folder, reason), reason=reason) from err
    if verify:
        _check_sha(got, entry, downloaded=True, marker=True)
    return got


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


