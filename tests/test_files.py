"""The one atomic-write primitive, :func:`discolib.io.files.atomic_path`, that every file writer builds on."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from discolib.io.files import WriteError, atomic_path, write_bytes_atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".f.bin.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and dest.read_bytes() == b"old"  # the final name is untouched while writing
        tmp.write_bytes(b"new contents")
    assert dest.read_bytes() == b"new contents"
    assert _names(tmp_path) == ["f.bin"]


def test_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # private while being written
            tmp.write_bytes(b"x")
        os.umask(0o002)
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o664


def test_exception_in_the_body_removes_the_temporary_and_keeps_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_path(dest, error=lambda exc: AssertionError("not for the body's errors")) as tmp:
        tmp.write_bytes(b"half")
        raise Boom
    with pytest.raises(KeyboardInterrupt), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert dest.read_bytes() == b"old"
    assert _names(tmp_path) == ["f.bin"]


def test_a_failing_rename_keeps_the_old_file_and_takes_the_callers_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left") as raw:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"new")
    assert type(raw.value) is OSError  # no error hook: the OSError as it is
    with pytest.raises(WriteError, match=rf"^cannot write {dest}: No space left on device$"):
        with atomic_path(dest, error=lambda exc: WriteError(dest, exc)) as tmp:
            tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"old"
    assert _names(tmp_path) == ["f.bin"]


def test_data_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(f"fsync {os.fstat(fd).st_size}")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_path(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(b"12345")
    assert calls == ["fsync 5", "replace"]


def test_folder_suffix_and_error_hook_for_the_setup(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "f.part"
    with pytest.raises(FileNotFoundError):  # the folder is not made unless asked
        with atomic_path(missing):
            pass
    with pytest.raises(WriteError, match=rf"^cannot write {missing}: No such file or directory$"):
        with atomic_path(missing, error=lambda exc: WriteError(missing, exc)):
            pass
    with atomic_path(missing, suffix=".part", mkdir=True) as tmp:
        assert tmp.name.endswith(".part")
        tmp.write_bytes(b"x")
    assert _names(missing.parent) == ["f.part"]


def test_a_crash_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """A process killed while writing (no cleanup runs) leaves the old file and at most a ``.*.tmp`` beside it."""
    dest = tmp_path / "run.json"
    write_bytes_atomic(dest, b'{"old": true}\n')
    code = (
        "import os, sys\n"
        "from discolib.io.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    with open(tmp, 'wb') as fh:\n"
        "        fh.write(b'{\"new\": ')\n"
        "    os._exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(dest)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert dest.read_bytes() == b'{"old": true}\n'
    left = [p.name for p in tmp_path.glob(".*.tmp")]
    assert len(left) == 1 and left[0].startswith(".run.json.")  # the pattern RunFolder.clean_temporaries sweeps
