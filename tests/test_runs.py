"""Run folders: atomic writes, records, resume points."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discolib.io.files import save_png_atomic, write_bytes_atomic
from discolib.run.runs import RunError, RunFolder, RunRecord


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "a" / "f.bin"
    write_bytes_atomic(p, b"old")
    write_bytes_atomic(p, b"new contents")
    assert p.read_bytes() == b"new contents"
    assert [x.name for x in p.parent.iterdir()] == ["f.bin"]


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "f.bin"
    write_bytes_atomic(p, b"old")

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(p, b"new")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.bin"]


def test_png_from_tensor_array_and_pil(tmp_path: Path) -> None:
    t = torch.rand(1, 3, 8, 12)
    save_png_atomic(tmp_path / "t.png", t)
    back = np.asarray(Image.open(tmp_path / "t.png"))
    assert back.shape == (8, 12, 3)
    expect = (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(back, expect)
    save_png_atomic(tmp_path / "a.png", expect)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), expect)
    save_png_atomic(tmp_path / "p.png", Image.fromarray(expect))
    with pytest.raises(ValueError, match="expected one image"):
        save_png_atomic(tmp_path / "b.png", torch.rand(2, 3, 4, 4))


def test_create_writes_settings_first_and_record(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, "batch", '{"x": 1}\n', run_id="r1")
    assert run.path == tmp_path / "batch" / "r1"
    assert json.loads(run.settings_path.read_text()) == {"x": 1}
    rec = run.read_record()
    assert rec.status == "created" and rec.frames_done == 0
    assert rec.versions["torch"] == torch.__version__
    assert rec.versions["discolib"] != "not installed"
    with pytest.raises(RunError, match="run folder already exists"):
        RunFolder.create(tmp_path, "batch", "{}", run_id="r1")


def test_resume_point_and_temporaries(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, "b", "{}")
    for i in (0, 1, 2, 4):
        run.save_frame(i, np.zeros((4, 4, 3), np.uint8))
    (run.frames_dir / ".000003.png.abc.tmp").write_bytes(b"trunc")
    assert run.complete_frames() == [0, 1, 2, 4]
    assert run.resume_point() == 3
    assert run.clean_temporaries() == 1
    assert not list(run.frames_dir.glob("*.tmp"))


def test_record_round_trip(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path, "b", "{}")
    rec = RunRecord(status="running", frames_total=8, frames_done=3, seeds=[1, 2, 3])
    run.write_record(rec)
    back = run.read_record()
    assert back.seeds == [1, 2, 3] and back.frames_done == 3 and back.status == "running"


def test_open_and_latest(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no run folder at"):
        RunFolder.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="settings.json is missing"):
        RunFolder.open(tmp_path / "empty")
    with pytest.raises(RunError, match="no runs to resume"):
        RunFolder.latest(tmp_path, "b")
    RunFolder.create(tmp_path, "b", "{}", run_id="20260101-000000")
    second = RunFolder.create(tmp_path, "b", "{}", run_id="20260102-000000")
    assert RunFolder.latest(tmp_path, "b").path == second.path
    assert RunFolder.open(second.path).path == second.path


def test_unwritable_output_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="run.output_root: cannot create"):
        RunFolder.create(blocker / "sub", "b", "{}")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        (ro / "b").mkdir()
        ro.chmod(0o500)
        (ro / "b").chmod(0o500)
        with pytest.raises(RunError, match="not writable"):
            RunFolder.create(ro, "b", "{}")


@pytest.mark.parametrize("encoders", [1, 3])
def test_frame_writer_writes_in_order_and_updates_record(tmp_path: Path, encoders: int) -> None:
    from discolib.run.runs import FrameWriter

    run = RunFolder.create(tmp_path, "b", "{}")
    rec = run.read_record()
    written: list[int] = []
    frames_done_seen: list[int] = []

    def on_written(i: int, path: Path, arr: np.ndarray) -> None:
        written.append(i)
        frames_done_seen.append(run.read_record().frames_done)  # the record never runs ahead of the disk

    writer = FrameWriter(run, rec, on_written, max_pending=2, encoders=encoders)
    # Frames of different sizes encode in different times: parallel encoders must still write them in order.
    sizes = [64, 4, 48, 4, 32, 4, 16, 4]
    for i, n in enumerate(sizes):
        writer.submit(i, np.random.default_rng(i).integers(0, 256, (n, n, 3), dtype=np.uint8), seed=100 + i)
    writer.close()
    assert written == list(range(len(sizes)))
    assert frames_done_seen == [i + 1 for i in range(len(sizes))]
    assert run.complete_frames() == list(range(len(sizes)))
    for i, n in enumerate(sizes):
        expected = np.random.default_rng(i).integers(0, 256, (n, n, 3), dtype=np.uint8)
        assert np.array_equal(np.asarray(Image.open(run.frame_path(i))), expected)
    back = run.read_record()
    assert back.frames_done == len(sizes) and back.seeds == [100 + i for i in range(len(sizes))]
    with pytest.raises(ValueError, match="encoders"):
        FrameWriter(run, rec, encoders=0)


def test_frame_writer_reports_write_errors(tmp_path: Path) -> None:
    from discolib.run.runs import FrameWriter

    run = RunFolder.create(tmp_path, "b", "{}")
    writer = FrameWriter(run, run.read_record())
    writer.submit(0, np.zeros((4, 4), np.float32), seed=1)  # not uint8 RGB: encoding fails on the thread
    with pytest.raises(ValueError, match="expected a uint8 array"):
        writer.close()
    assert run.complete_frames() == []


def test_frame_writer_keeps_writing_when_the_callback_fails(tmp_path: Path) -> None:
    from discolib.run.runs import FrameWriter

    run = RunFolder.create(tmp_path, "b", "{}")

    def broken(i: int, path: Path, arr: np.ndarray) -> None:
        raise RuntimeError("a UI callback broke")

    writer = FrameWriter(run, run.read_record(), broken)
    for i in range(3):
        writer.submit(i, np.zeros((4, 4, 3), np.uint8), seed=i)
    with pytest.raises(RuntimeError, match="a UI callback broke"):
        writer.close()
    assert run.complete_frames() == [0, 1, 2]  # no frame lost to the callback


def test_latest_orders_same_second_runs_numerically(tmp_path: Path) -> None:
    for rid in ("20260101-000000", "20260101-000000-2", "20260101-000000-10"):
        RunFolder.create(tmp_path, "b", "{}", run_id=rid)
    assert RunFolder.latest(tmp_path, "b").path.name == "20260101-000000-10"


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_pending_frame_reaches_the_writer_intact(tmp_path: Path, device: str) -> None:
    from discolib.run.runs import FrameWriter, PendingFrame

    frame = torch.randint(0, 256, (6, 5, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pending = PendingFrame.from_tensor(frame.to(device))
    assert isinstance(pending, PendingFrame) == (device == "cuda")
    run = RunFolder.create(tmp_path, "b", "{}")
    writer = FrameWriter(run, run.read_record())
    writer.submit(0, pending, seed=1)
    writer.close()
    assert np.array_equal(np.asarray(Image.open(run.frame_path(0))), frame.numpy())
    assert run.read_record().frames_done == 1


# ---------------------------------------------------------------------------------------------- issue 11: records that cannot lie


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("status", "finished"),
        ("frames_total", "8"),
        ("frames_done", "abc"),
        ("frames_done", True),
        ("frames_done", -1),
        ("seeds", 5),
        ("seeds", [1, "2"]),
        ("seeds", [2**32]),
        ("frame_sha256", ["abc"]),
        ("settings_sha256", 7),
        ("torch_threads", 1.5),
        ("versions", ["torch"]),
        ("versions", {"torch": 2}),
        ("extra", []),
        ("error", None),
    ],
)
def test_record_field_of_the_wrong_type_is_a_run_error(tmp_path: Path, key: str, value: object) -> None:
    run = RunFolder.create(tmp_path, "b", "{}")
    data = json.loads(run.record_path.read_text())
    data[key] = value
    run.record_path.write_text(json.dumps(data))
    with pytest.raises(RunError, match=rf"run.json: field '{key}' is .*, expected ") as info:
        run.read_record()
    assert "\n" not in str(info.value)
    record, why = run.try_read_record()
    assert record is None and why == str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a JSON object, got list"),
        ('{"status": "done"', "invalid JSON"),
        ('{"status": "done", "frames_done": NaN}', "NaN is not a valid number"),
        ('{"frames_done": 1, "frames_total": 1, "seeds": []}', "field 'status' is missing"),
    ],
)
def test_unreadable_record_is_a_run_error(tmp_path: Path, text: str, message: str) -> None:
    run = RunFolder.create(tmp_path, "b", "{}")
    run.record_path.write_text(text)
    with pytest.raises(RunError, match=message):
        run.read_record()


def test_create_records_settings_hash_and_threads(tmp_path: Path) -> None:
    from discolib.run.runs import settings_digest

    run = RunFolder.create(tmp_path, "b", '{"b": 1, "a": [1, 2]}')
    rec = run.read_record()
    assert rec.settings_sha256 == settings_digest('{"a":[1,2],"b":1}') == run.settings_hash()
    assert settings_digest('{"a": [1, 2], "b": 2}') != rec.settings_sha256
    assert (rec.torch_threads, rec.torch_interop_threads) == (torch.get_num_threads(), torch.get_num_interop_threads())
    assert rec.frame_sha256 == []


def test_frame_writer_records_each_frames_hash(tmp_path: Path) -> None:
    import hashlib

    from discolib.run.runs import FrameWriter

    run = RunFolder.create(tmp_path, "b", "{}")
    writer = FrameWriter(run, run.read_record())
    for i in range(3):
        writer.submit(i, np.full((4, 4, 3), i, np.uint8), seed=i)
    writer.close()
    rec = run.read_record()
    assert rec.frame_sha256 == [hashlib.sha256(run.frame_path(i).read_bytes()).hexdigest() for i in range(3)]


def test_verify_frames_stops_at_the_first_changed_frame(tmp_path: Path) -> None:
    from discolib.run.runs import FrameWriter

    run = RunFolder.create(tmp_path, "b", "{}")
    writer = FrameWriter(run, run.read_record())
    for i in range(5):
        writer.submit(i, np.full((4, 4, 3), i, np.uint8), seed=i)
    writer.close()
    rec = run.read_record()
    assert run.verify_frames(rec, size=(4, 4), n_frames=5) == 5
    save_png_atomic(run.frame_path(2), np.full((4, 4, 3), 99, np.uint8))  # a valid PNG, but not the one written
    rec = run.read_record()
    assert run.verify_frames(rec, size=(4, 4), n_frames=5) == 2
    assert rec.frames_done == 2 and len(rec.frame_sha256) == 2 and rec.seeds == [0, 1]
    rec = run.read_record()
    assert run.verify_frames(rec, size=(4, 4), n_frames=1) == 1  # never past the frames the settings ask for


def test_write_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from discolib.errors import DiscolibError
    from discolib.io.files import WriteError

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    target = tmp_path / "frames" / "000003.png"
    with pytest.raises(WriteError, match=rf"^cannot write {target}: No space left on device$") as info:
        write_bytes_atomic(target, b"png")
    assert isinstance(info.value, OSError) and isinstance(info.value, DiscolibError)
    assert info.value.errno == errno.ENOSPC
    assert list((tmp_path / "frames").iterdir()) == []  # the temporary file is gone too


def test_run_ids_of_one_second_count_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from discolib.run import runs

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: object = None) -> Frozen:  # type: ignore[override]
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(runs._dt, "datetime", Frozen)
    names = [RunFolder.create(tmp_path, "b", "{}").path.name for _ in range(3)]
    assert names == ["20260102-030405", "20260102-030405-1", "20260102-030405-2"]


def test_a_run_folder_is_locked_while_rendered(tmp_path: Path) -> None:
    """A second render/resume of a folder being rendered is refused in one line; the lock goes with the first."""
    folder = RunFolder.create(tmp_path, "b", "{}\n")
    with folder.lock():
        with pytest.raises(RunError, match="being rendered by another process"):
            folder.lock()
    folder.lock().release()  # free again once the first is done


def test_thread_counts_beyond_any_machine_are_refused(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path, "b", "{}\n")
    data = json.loads(folder.record_path.read_text())
    data["torch_threads"] = 100_000
    folder.record_path.write_text(json.dumps(data))
    with pytest.raises(RunError, match="torch_threads"):
        folder.read_record()
