"""Reading weight files safely and loading them strictly (a leaf of the models layer: no model module imports it back).

Checkpoints are read with ``safetensors`` or ``torch.load(weights_only=True)`` only: no pickled code runs. A file
that holds pickled code or objects is refused with a one-line error naming the file and the objects it would have
called (:func:`pickled_globals` reads them statically, without unpickling). :func:`load_module_strict` names every
missing, unexpected or mis-shaped key. Every loader of :mod:`discolib.models` uses these helpers.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from discolib.errors import InputError, one_line
from discolib.io.inputs import json_depth_ok, read_user_text

__all__ = [
    "LOAD_ERRORS",
    "PICKLE_SUFFIXES",
    "CheckpointError",
    "check_weights_folder",
    "find_refused_weights",
    "load_module_strict",
    "load_state_dict",
    "pickled_globals",
    "refused_by_weights_only",
    "refused_weights_error",
    "refused_weights_message",
    "sha256_file",
    "transformers_weights_only",
    "weights_folder_problem",
]


class CheckpointError(InputError):
    """A checkpoint is missing, corrupt, or does not match the architecture it is loaded into."""


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


def refused_weights_error(
    err: BaseException, folder: str | os.PathLike[str] | None, name: str | os.PathLike[str]
) -> str | None:
    """The one-line message for ``err`` when it is a ``weights_only`` refusal, else ``None``.

    The message names the refused file found in ``folder`` (:func:`find_refused_weights`; ``None`` when there is
    no local folder to look in), else ``name``: the shared translation of what diffusers/transformers raise for a
    model holding pickled code.
    """
    if not refused_by_weights_only(err):
        return None
    bad = find_refused_weights(folder) if folder is not None else None
    return refused_weights_message(bad or name, err)


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


def check_weights_folder(folder: str | os.PathLike[str], what: str, error: type[InputError]) -> None:
    """Raise ``error(f"{what}: {problem}")`` when :func:`weights_folder_problem` finds one in ``folder``.

    Every local model folder goes through this before ``from_pretrained`` sees it.
    """
    problem = weights_folder_problem(folder)
    if problem is not None:
        raise error(f"{what}: {problem}")


#: What diffusers/transformers raise for a model's own files (missing, truncated, not weights, bad JSON, wrong
#: shapes, refused pickles); anything else out of ``from_pretrained`` is a bug and keeps its traceback.
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    RuntimeError,
    EOFError,
    RecursionError,
    pickle.UnpicklingError,
)


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
