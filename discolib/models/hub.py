"""Real weights for Disco Diffusion's models: catalogue, local lookup, download, SHA-256 check, loading.

The catalogue (``discolib/data/disco_models.json``) lists each public checkpoint Disco loads: its file name, where
it is published (a Hugging Face repo or a plain URL), its SHA-256 and, for the guided-diffusion UNets, the
hyper-parameters it needs. A checkpoint is looked for, in order:

1. ``local_path=`` when given (a file, or a folder holding the catalogue's file name);
2. the models folder: ``cache_dir=``, else ``$DISCOLIB_MODELS``, else ``~/.cache/discolib/models``;
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

import copy
import difflib
import functools
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

import torch

from discolib.errors import InputError, WeightsUnavailable

if TYPE_CHECKING:
    from diffusers import UNet2DModel

    from discolib.models.adm import AdmConfig
    from discolib.models.secondary import SecondaryDiffusionImageNet2

__all__ = [
    "PICKLE_SUFFIXES",
    "CheckpointError",
    "CheckpointUnavailable",
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
    "find_refused_weights",
    "one_line",
    "pickled_globals",
    "refused_by_weights_only",
    "refused_weights_message",
    "sha256_file",
    "transformers_weights_only",
    "weights_folder_problem",
]

MODELS_ENV = "DISCOLIB_MODELS"
SECONDARY_MODEL = "secondary_model_imagenet_2"
_TRUE = {"1", "ON", "YES", "TRUE"}


class CheckpointError(InputError):
    """A checkpoint is missing, corrupt, or does not match the architecture it is loaded into."""


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


def models_dir() -> Path:
    """The models folder: ``$DISCOLIB_MODELS`` or ``~/.cache/discolib/models`` (not created here)."""
    env = os.environ.get(MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "discolib" / "models"


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def one_line(text: object, limit: int = 600) -> str:
    """``text`` on one line (runs of whitespace, newlines included, become one space), cut to ``limit`` chars.

    Library errors (transformers, diffusers, torch) often span several lines; discolib's errors quote them in a
    one-line message.
    """
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """``open(path, "rb")`` that refuses anything but a regular file (a FIFO would block, a device never ends)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{path} is not a regular file (a folder, device or FIFO); expected a weights file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_size`` pieces (constant memory for multi-GB checkpoints)."""
    h = hashlib.sha256()
    with _open_regular(path) as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


#: Weights formats read with ``torch.load`` (pickle inside); ``.safetensors`` holds no code at all.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# A pickle stream longer than this is not scanned for its globals (weights live outside the pickle in torch files).
_SCAN_BYTES = 64 << 20
_SCAN_OPS = 2_000_000


def _allowed_globals() -> set[str]:
    """The globals torch's weights_only unpickler accepts (tensor rebuilders, storages, dtypes, OrderedDict)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # a private torch API: without it, name everything but torch's own and OrderedDict
        return set()


def _globals_in_pickles(data: bytes) -> set[str]:
    """``module.name`` of every GLOBAL/INST/STACK_GLOBAL in the pickle streams at the start of ``data``.

    Static (``pickletools.genops`` only decodes opcodes): nothing is imported or called. A legacy torch file holds
    a few pickles in a row (magic number, protocol, system info, then the object), so up to four are read.
    """
    names: set[str] = set()
    strings: list[str] = []
    ops = 0
    stream = io.BytesIO(data)
    for _ in range(4):
        try:
            for op, arg, _pos in pickletools.genops(stream):
                ops += 1
                if ops > _SCAN_OPS:
                    return names
                if op.name in ("GLOBAL", "INST"):
                    names.add(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.add(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings = [*strings[-1:], arg]
        except Exception:  # the end of the pickles (raw storage bytes follow) or not a pickle at all
            break
    return names


def pickled_globals(path: str | os.PathLike[str]) -> list[str]:
    """Names of the classes and functions a pickle-based weights file would call that are not plain weights.

    These are what ``torch.load(weights_only=True)`` refuses (``posix.system``, a user class, ...). The file is
    read statically: its pickle is disassembled with :mod:`pickletools`, never unpickled, so nothing in it runs.
    Returns ``[]`` for a file of tensors, a safetensors file, and anything that is not a readable pickle.
    """
    try:
        with _open_regular(path) as fh:
            if zipfile.is_zipfile(fh):
                with zipfile.ZipFile(fh) as zf:
                    member = next((i for i in zf.infolist() if i.filename.endswith("data.pkl")), None)
                    if member is None or member.file_size > _SCAN_BYTES:
                        return []
                    data = zf.read(member)
            else:
                fh.seek(0)
                data = fh.read(_SCAN_BYTES)
    except Exception:  # unreadable or not a zip/pickle: nothing to name
        return []
    allowed = _allowed_globals()
    found = _globals_in_pickles(data)
    if not allowed:
        allowed = {n for n in found if n.startswith("torch.") and not n.startswith(("torch.hub", "torch.load"))}
        allowed.add("collections.OrderedDict")
    return sorted(found - allowed)


def refused_by_weights_only(err: BaseException) -> bool:
    """True when ``err`` (or an error it was raised from) is a refusal of ``torch.load(weights_only=True)``.

    diffusers and transformers wrap torch's ``UnpicklingError`` in their own ``OSError``/``ValueError``; the
    original stays in the ``__cause__``/``__context__`` chain.
    """
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, pickle.UnpicklingError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _innermost(err: BaseException) -> BaseException:
    seen: set[int] = set()
    e = err
    while id(e) not in seen and (e.__cause__ or e.__context__) is not None:
        seen.add(id(e))
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return e


def refused_weights_message(path: str | os.PathLike[str], err: BaseException | None = None) -> str:
    """One line: ``path`` is not a plain weights file (naming the pickled objects it holds); use .safetensors."""
    names = pickled_globals(path)
    if names:
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        why = f"it holds pickled code/objects ({shown}) that torch.load(weights_only=True) refuses to run"
    else:
        detail = f" ({one_line(_innermost(err), 160)})" if err is not None else ""
        why = f"torch.load(weights_only=True) cannot read it as tensors{detail}"
    return f"{path} is not a plain weights file: {why}; nothing in it was run. Use a .safetensors file instead."


def find_refused_weights(folder: str | os.PathLike[str]) -> Path | None:
    """The pickle-format weights file in ``folder`` (not recursive) that holds pickled code, else the only one."""
    try:
        candidates = sorted(
            p for p in Path(folder).iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES) and p.is_file()
        )
    except OSError:
        return None
    for p in candidates:
        if pickled_globals(p):
            return p
    return candidates[0] if len(candidates) == 1 else None


def transformers_weights_only() -> dict[str, Any]:
    """``{"weights_only": True}`` for transformers' ``from_pretrained`` where it takes that argument.

    It is transformers' default; passing it says so in our call, whatever a later default or the environment
    (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only overrides calls that leave it unset) would choose.
    """
    import inspect

    from transformers import PreTrainedModel

    takes = "weights_only" in inspect.signature(PreTrainedModel.from_pretrained).parameters
    return {"weights_only": True} if takes else {}


def weights_folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why a local model folder (diffusers/transformers layout) must not be handed to ``from_pretrained``, or None.

    Checked, not recursively: every entry is a regular file or a folder (a FIFO named ``config.json`` would block
    the loader forever, a device never ends); every ``*config.json`` / ``model_index.json`` is a file of at most
    4 MiB nested at most 64 deep (Python's JSON decoder overflows its stack near 1 000); and, when the folder has
    no ``.safetensors`` weights (so the loaders fall back to ``torch.load``), no pickle-format weights file holds
    pickled code. Returns a one-line message naming the file.
    """
    from discolib.io.inputs import json_depth_ok, read_user_text

    root = Path(folder)
    try:
        entries = sorted(root.iterdir())
    except OSError as err:
        return f"cannot list {root}: {one_line(err)}"
    for entry in entries:
        try:
            mode = entry.stat().st_mode
        except OSError as err:  # a dangling symlink, a file without permission
            return f"cannot read {entry}: {err.strerror or one_line(err)}"
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return f"{entry} is not a regular file (a device, FIFO or socket)"
        name = entry.name.lower()
        if stat.S_ISREG(mode) and (name.endswith("config.json") or name == "model_index.json"):
            try:
                text = read_user_text(entry, setting="model config")
            except InputError as err:
                return str(err)
            where = json_depth_ok(text)
            if where is not None:
                return f"{entry}: JSON nested too deeply (at character {where})"
    if not any(e.name.lower().endswith(".safetensors") for e in entries):
        bad = next((e for e in entries if e.name.lower().endswith(PICKLE_SUFFIXES) and pickled_globals(e)), None)
        if bad is not None:
            return refused_weights_message(bad)
    return None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors onto the CPU.

    ``.safetensors`` with safetensors; ``.pt``/``.pth``/``.ckpt``/``.bin`` with
    ``torch.load(map_location="cpu", weights_only=True)``, so a file holding anything but tensors and plain
    containers is refused rather than executed. A ``{"state_dict": {...}}`` wrapper and a DataParallel ``module.``
    prefix are removed.

    Raises:
        CheckpointError: missing file, unknown extension, unreadable or non-tensor content (one line, naming the
            file; for pickled code, the objects it would have called).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint file not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a regular file (a folder, device or FIFO)")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(p), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"cannot read safetensors file {p}: {one_line(err)}") from err
    elif suffix in PICKLE_SUFFIXES:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(refused_weights_message(p, err)) from None
        except Exception as err:  # RuntimeError (bad zip), EOFError (truncated), OSError: all mean "unreadable"
            raise CheckpointError(
                f"cannot read {p} with torch.load(weights_only=True): {one_line(err, 300)}. "
                "Only files of tensors are accepted (no pickled code is run)."
            ) from None
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
        raise CheckpointError(f"{p}: entries that are not tensors: {one_line(bad[:5], 200)}")
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
        shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise CheckpointError(f"{what}: the checkpoint does not match the architecture: {shown}")
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
    from discolib.io.inputs import loads_json, read_user_text

    try:
        data = loads_json(read_user_text(_marker(path), setting="checkpoint marker", max_bytes=4096), what="marker")
    except (InputError, OSError):
        return False
    return data == {"sha256": expected, **stamp}


def _mark_verified(path: Path, sha: str, stamp: Mapping[str, Any]) -> None:
    from discolib.run.runs import write_json_atomic

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


def _expand(text: str) -> Path:
    from discolib.io.inputs import expand_path

    try:
        return expand_path(text, setting="checkpoint")
    except InputError as err:
        raise CheckpointError(str(err)) from None


def _verify_named_file(
    path: Path, catalogue: Mapping[str, Any] | None, *, cache_dir: str | os.PathLike[str] | None, verify: bool
) -> dict[str, Any] | None:
    """The catalogue entry whose file name ``path`` has (None if none), after checking the file's SHA-256.

    A file called like a catalogue checkpoint is taken for it (its hyper-parameters come from the catalogue), so
    it must be that checkpoint: verified once, remembered by a marker when it lies in the models folder.
    """
    try:
        entry = catalogue_entry(path.name, catalogue)
    except UnknownModelError:
        return None
    if verify:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else models_dir()
        _check_sha(path, entry, downloaded=False, marker=_in_folder(path, folder))
    return entry


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
            is a catalogue file name uses the catalogue's hyper-parameters and is verified against its SHA-256
            (unless ``verify=False``); any other file has them inferred from its weights
            (:func:`discolib.models.adm.infer_adm_config`), which needs ``image_size``.
        image_size: training resolution of an unknown file (256 or 512 for Disco's models).
        config: hyper-parameters to use instead (an ``AdmConfig`` or a guided-diffusion dict).
        cache_dir, verify, catalogue: as :func:`fetch_checkpoint`.
        dtype, device: of the returned model.

    Returns:
        The model in eval mode; ``model(x, t).sample`` is (B, 6, H, W): eps then the variance interpolation.
    """
    from discolib.models.adm import AdmConfig, adm_to_diffusers, infer_adm_config

    text = os.fspath(name_or_path)
    path = _expand(text)
    entry: dict[str, Any] | None = None
    if path.is_file():
        entry = _verify_named_file(path, catalogue, cache_dir=cache_dir, verify=verify)
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
    from discolib.models.secondary import SecondaryDiffusionImageNet2

    text = os.fspath(path_or_name)
    path = _expand(text)
    if path.is_file():
        _verify_named_file(path, catalogue, cache_dir=cache_dir, verify=verify)
    else:
        entry = _entry_or_missing_file(text, catalogue)
        path = fetch_checkpoint(entry["name"], cache_dir=cache_dir, verify=verify, catalogue=catalogue)
    model = SecondaryDiffusionImageNet2.from_state_dict(load_state_dict(path))
    model = model.to(dtype=dtype)
    return model.to(device) if device is not None else model
