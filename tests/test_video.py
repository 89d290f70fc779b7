"""Video writing (PNG frames -> mp4/gif with the bundled ffmpeg) and reading (video -> (1, 3, H, W) tensors)."""

from __future__ import annotations

import math
import os
import stat
import struct
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discolib.io import video
from discolib.io.files import encode_png, save_png_atomic
from discolib.io.video import (
    VideoError,
    count_video_frames,
    first_frame,
    frames_to_video,
    probe_video,
    read_video_frames,
    video_info,
)

N = 10
W, H = 32, 24


def make_frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A smooth frame (H.264 keeps smooth images well): gradients plus a bright square that moves with i."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), np.full_like(xx, (i % 7) / 7.0)], axis=-1)
    x0 = (2 * i) % (w - 8)
    img[4:12, x0 : x0 + 8] = [0.9, 0.9, 0.2]
    return (img * 255).round().astype(np.uint8)


def write_frames(folder: Path, n: int = N, w: int = W, h: int = H, start: int = 0) -> list[np.ndarray]:
    arrays = [make_frame(i, w, h) for i in range(n)]
    for i, a in enumerate(arrays):
        save_png_atomic(folder / f"{start + i:06d}.png", a)
    return arrays


def as_array(t: torch.Tensor) -> np.ndarray:
    assert t.ndim == 4 and t.shape[:2] == (1, 3) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    return t[0].permute(1, 2, 0).numpy()


def mean_abs_err(t: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(as_array(t) - ref.astype(np.float32) / 255.0).mean())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def write_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * k / rate)) for k in range(int(seconds * rate)))
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """One 32x24, 10-frame, 12 fps mp4 shared by the reading tests."""
    root = tmp_path_factory.mktemp("clip")
    frames = root / "frames"
    arrays = write_frames(frames)
    return frames_to_video(frames, root / "clip.mp4", fps=12), arrays


# ---------------------------------------------------------------------------------------------- writing mp4


def test_mp4_round_trip(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, arrays = clip
    assert path.is_file() and leftovers(path.parent) == []
    got = list(read_video_frames(path))
    assert len(got) == N == count_video_frames(path)
    for t, ref in zip(got, arrays, strict=True):
        assert t.shape == (1, 3, H, W)
        assert mean_abs_err(t, ref) < 0.02  # lossy, but CRF 17 on smooth frames is close


def test_mp4_stream_is_h264_yuv420p_at_fps(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = clip
    info = probe_video(path)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(12.0)
    assert not info.has_audio
    meta = video_info(path)
    assert meta["fps"] == pytest.approx(12.0)
    assert (meta["width"], meta["height"], meta["n_frames"]) == (W, H, N)
    assert meta["duration"] == pytest.approx(N / 12, abs=0.05)
    # +faststart: the index (moov) comes before the media data (mdat).
    head = path.read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_mp4_mode_follows_umask(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = clip
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_odd_size_is_padded_with_the_edge(tmp_path: Path) -> None:
    arrays = write_frames(tmp_path / "f", n=4, w=31, h=23)
    out = frames_to_video(tmp_path / "f", tmp_path / "odd.mp4", fps=8)
    info = probe_video(out)
    assert (info.width, info.height, info.pix_fmt) == (32, 24, "yuv420p")
    got = list(read_video_frames(out))
    assert len(got) == 4
    for t, ref in zip(got, arrays, strict=True):
        a = as_array(t)
        assert np.abs(a[:23, :31] - ref / 255.0).mean() < 0.02
        # the added column/row repeat the edge (not black)
        assert np.abs(a[:23, 31] - ref[:, 30] / 255.0).mean() < 0.05
        assert np.abs(a[23, :31] - ref[22, :] / 255.0).mean() < 0.05


def test_frame_list_keeps_order_and_fractional_fps(tmp_path: Path) -> None:
    arrays = write_frames(tmp_path / "f", n=6)
    order = [5, 0, 3, 1]  # not a contiguous sequence: frames are piped to ffmpeg
    out = frames_to_video([tmp_path / "f" / f"{i:06d}.png" for i in order], tmp_path / "v.mp4", fps=7.5)
    got = list(read_video_frames(out))
    assert len(got) == len(order)
    for t, i in zip(got, order, strict=True):
        assert mean_abs_err(t, arrays[i]) < 0.02
    assert probe_video(out).fps == pytest.approx(7.5)


def test_sequence_not_starting_at_zero_and_folder_with_later_frames(tmp_path: Path) -> None:
    arrays = write_frames(tmp_path / "f", n=8, start=3)
    # frames 000003..000005 of a folder that holds up to 000010: only those three are encoded
    chosen = [tmp_path / "f" / f"{i:06d}.png" for i in (3, 4, 5)]
    out = frames_to_video(chosen, tmp_path / "v.mp4", fps=12)
    got = list(read_video_frames(out))
    assert len(got) == 3
    for t, ref in zip(got, arrays[:3], strict=True):
        assert mean_abs_err(t, ref) < 0.02


def test_folder_with_a_gap_warns_and_encodes_what_is_there(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=5)
    (tmp_path / "f" / "000002.png").unlink()
    (tmp_path / "f" / "notes.txt").write_text("not a frame")
    with pytest.warns(UserWarning, match="000002.png"):
        out = frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12)
    assert count_video_frames(out) == 4


def test_awkward_paths_are_not_interpreted(tmp_path: Path) -> None:
    folder = tmp_path / "-n 50% concat:x, y" / "fr%03d"
    arrays = write_frames(folder, n=3)
    out = frames_to_video(folder, tmp_path / "-y out%d: it.mp4", fps=12)
    assert out.name == "-y out%d: it.mp4" and out.is_file()
    got = list(read_video_frames(out))
    assert len(got) == 3
    assert mean_abs_err(got[2], arrays[2]) < 0.02


# ---------------------------------------------------------------------------------------------- gif, soundtrack


def test_gif_frames_loop_and_format(tmp_path: Path) -> None:
    arrays = write_frames(tmp_path / "f", n=8, w=31, h=23)
    out = frames_to_video(tmp_path / "f", tmp_path / "anim.gif", fps=10)
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == 8
        assert im.info.get("loop") == 0  # loop forever
        assert im.info.get("duration") == 100  # ms per frame at 10 fps
        assert im.size == (31, 23)  # gif needs no even size
    got = list(read_video_frames(out))
    assert len(got) == 8
    with Image.open(out) as im:
        for i, t in enumerate(got):
            im.seek(i)
            assert mean_abs_err(t, np.asarray(im.convert("RGB"))) < 1e-6  # our decoder agrees with Pillow's
            assert mean_abs_err(t, arrays[i]) < 0.02  # a 256-colour palette per frame


def test_fmt_overrides_suffix_and_unknown_suffix_fails(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=3)
    out = frames_to_video(tmp_path / "f", tmp_path / "anim.bin", fps=10, fmt="gif")
    assert out.read_bytes()[:6] == b"GIF89a"
    with pytest.raises(VideoError, match=r"output.video_format.*\.mp4 or \.gif"):
        frames_to_video(tmp_path / "f", tmp_path / "anim.avi", fps=10)
    with pytest.raises(VideoError, match="output.video_format"):
        frames_to_video(tmp_path / "f", tmp_path / "anim.mp4", fps=10, fmt="webm")  # type: ignore[arg-type]


def test_soundtrack_is_muxed_without_dropping_frames(tmp_path: Path) -> None:
    write_frames(tmp_path / "f")
    audio = write_wav(tmp_path / "tone.wav", seconds=0.4)  # shorter than the 10 frames at 12 fps
    out = frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12, soundtrack=audio)
    info = probe_video(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.codec == "h264"
    assert count_video_frames(out) == N
    assert video_info(out)["has_audio"] is True


def test_soundtrack_for_gif_is_ignored_with_a_warning(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=3)
    audio = write_wav(tmp_path / "tone.wav", seconds=0.2)
    with pytest.warns(UserWarning, match="output.soundtrack"):
        out = frames_to_video(tmp_path / "f", tmp_path / "a.gif", fps=10, soundtrack=audio)
    assert count_video_frames(out) == 3


def test_bad_soundtrack(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=3)
    with pytest.raises(VideoError, match=r"^output\.soundtrack: file not found: .*missing\.wav"):
        frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12, soundtrack=tmp_path / "missing.wav")
    (tmp_path / "notes.txt").write_text("la la la")
    with pytest.raises(VideoError, match=r"^output\.soundtrack: not a readable audio file"):
        frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12, soundtrack=tmp_path / "notes.txt")
    assert not (tmp_path / "v.mp4").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------- failures


def test_no_frames(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames to encode"):
        frames_to_video(tmp_path / "empty", tmp_path / "v.mp4", fps=12)
    with pytest.raises(VideoError, match="no frames to encode"):
        frames_to_video([], tmp_path / "v.mp4", fps=12)
    with pytest.raises(VideoError, match="frames folder not found"):
        frames_to_video(tmp_path / "nowhere", tmp_path / "v.mp4", fps=12)
    (tmp_path / "file.png").write_bytes(encode_png(make_frame(0)))
    with pytest.raises(VideoError, match="is not a folder"):
        frames_to_video(tmp_path / "file.png", tmp_path / "v.mp4", fps=12)
    with pytest.raises(VideoError, match="frame not found"):
        frames_to_video([tmp_path / "000000.png"], tmp_path / "v.mp4", fps=12)


def test_bad_arguments(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=2)
    for fps in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(VideoError, match="output.fps"):
            frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=fps)
    for crf in (-1, 52, 17.5):
        with pytest.raises(VideoError, match="crf"):
            frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12, crf=crf)  # type: ignore[arg-type]


def test_frames_of_different_sizes(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=3)
    save_png_atomic(tmp_path / "f" / "000003.png", make_frame(3, w=30, h=24))
    with pytest.raises(VideoError, match=r"000003\.png is 30x24 but the first frame is 32x24"):
        frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12)


def test_truncated_png_fails_before_ffmpeg(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=4)
    (tmp_path / "f" / "000002.png").write_bytes(encode_png(make_frame(2))[:40])
    with pytest.raises(VideoError, match=r"000002\.png is not a readable image"):
        frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12)
    assert leftovers(tmp_path) == [] and not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("piped", [False, True])
def test_corrupt_png_data_fails_and_leaves_nothing(tmp_path: Path, piped: bool) -> None:
    """A PNG whose header is fine but whose pixel data is broken: ffmpeg drops the frame and exits 0, so the
    frame count check must catch it; with piping, Pillow fails on it. Either way the old video stays as it was."""
    write_frames(tmp_path / "f", n=5)
    data = bytearray(encode_png(make_frame(3)))
    at = data.find(b"IDAT") + 8
    data[at : at + 40] = bytes(b ^ 0xFF for b in data[at : at + 40])
    (tmp_path / "f" / "000003.png").write_bytes(bytes(data))
    out = tmp_path / "v.mp4"
    out.write_bytes(b"previous video")
    frames: list[Path] | Path = tmp_path / "f"
    if piped:
        frames = [tmp_path / "f" / f"{i:06d}.png" for i in (0, 1, 3, 2, 4)]
    with pytest.raises(VideoError, match=r"4 of 5 frames|not a readable image"):
        frames_to_video(frames, out, fps=12)
    assert out.read_bytes() == b"previous video"
    assert leftovers(tmp_path) == []


def test_ffmpeg_failure_reports_stderr_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the real ffmpeg fail (an unknown filter in its graph): its stderr tail ends up in the error."""
    write_frames(tmp_path / "f", n=3, w=31, h=23)
    monkeypatch.setattr(video, "_even_pad_filter", lambda w, h: "nosuchfilter_xyz,")
    with pytest.raises(VideoError, match=r"(?s)ffmpeg could not write .*v\.mp4 \(exit status \d+\):\n.*nosuchfilter_xyz"):
        frames_to_video(tmp_path / "f", tmp_path / "v.mp4", fps=12)
    assert leftovers(tmp_path) == [] and not (tmp_path / "v.mp4").exists()


def test_full_disk_when_the_video_is_put_in_place_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    write_frames(tmp_path / "f", n=2)

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video.os, "replace", full)
    out = tmp_path / "v.mp4"
    with pytest.raises(VideoError, match=rf"^cannot write {out}: No space left on device$"):
        frames_to_video(tmp_path / "f", out, fps=12)
    assert leftovers(tmp_path) == [] and not out.exists()


def test_unknown_user_in_a_path_is_one_line(tmp_path: Path) -> None:
    write_frames(tmp_path / "f", n=1)
    with pytest.raises(ValueError, match=r"^video output: cannot expand '~nosuchuser_discolib/v.mp4'"):
        frames_to_video(tmp_path / "f", "~nosuchuser_discolib/v.mp4", fps=12)
    with pytest.raises(ValueError, match=r"^frames: cannot expand"):
        frames_to_video("~nosuchuser_discolib/f", tmp_path / "v.mp4", fps=12)
    with pytest.raises(ValueError, match=r"^animation.video_init_path: cannot expand"):
        video_info("~nosuchuser_discolib/in.mp4")
    with pytest.raises(ValueError, match=r"^output.soundtrack: cannot expand"):
        video.check_soundtrack("~nosuchuser_discolib/a.wav")


# ---------------------------------------------------------------------------------------------- reading


def test_every_nth_and_max_frames(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, arrays = clip
    got = list(read_video_frames(path, every_nth=3))
    assert len(got) == 4  # frames 0, 3, 6, 9
    for t, i in zip(got, (0, 3, 6, 9), strict=True):
        assert mean_abs_err(t, arrays[i]) < 0.02
    assert len(list(read_video_frames(path, max_frames=4))) == 4
    assert len(list(read_video_frames(path, every_nth=4, max_frames=2))) == 2
    assert len(list(read_video_frames(path, max_frames=100))) == N


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_every_nth_must_be_a_positive_integer(clip: tuple[Path, list[np.ndarray]], bad: object) -> None:
    path, _ = clip
    with pytest.raises(VideoError, match="extract_nth_frame: expected an integer >= 1"):
        read_video_frames(path, every_nth=bad)  # type: ignore[arg-type]  # raised at the call, not at next()
    with pytest.raises(VideoError, match="max_frames"):
        read_video_frames(path, max_frames=0)


def test_resize_warns_once(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, arrays = clip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(read_video_frames(path, size=(16, 12)))
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and "32x24" in msgs[0] and "16x12" in msgs[0]
    assert len(got) == N and all(t.shape == (1, 3, 12, 16) for t in got)
    small = np.asarray(Image.fromarray(arrays[0]).resize((16, 12), Image.Resampling.LANCZOS))
    assert mean_abs_err(got[0], small) < 0.03
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same size: no warning
        assert len(list(read_video_frames(path, size=(W, H), max_frames=1))) == 1
    with pytest.raises(VideoError, match="size"):
        read_video_frames(path, size=(0, 12))


def test_any_file_name_is_read(clip: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    """Content decides, not the suffix (imageio's v2 ffmpeg plugin refuses a file without a video suffix)."""
    path, arrays = clip
    renamed = tmp_path / "take 1 (final)"
    renamed.write_bytes(path.read_bytes())
    got = list(read_video_frames(renamed, max_frames=3))
    assert len(got) == 3 and mean_abs_err(got[2], arrays[2]) < 0.02


def test_first_frame(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, arrays = clip
    t = first_frame(path)
    assert t.shape == (1, 3, H, W)
    assert mean_abs_err(t, arrays[0]) < 0.02
    with pytest.warns(UserWarning, match="resized"):
        assert first_frame(path, (8, 6)).shape == (1, 3, 6, 8)


def test_missing_and_not_a_video(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    for fn in (read_video_frames, video_info, count_video_frames, first_frame, probe_video):
        with pytest.raises(VideoError, match=r"^animation\.video_init_path: file not found: .*nope\.mp4"):
            fn(missing)
    text = tmp_path / "clip.mp4"
    text.write_text("this is not a video\n")
    png = save_png_atomic(tmp_path / "still.png", make_frame(0))
    wav = write_wav(tmp_path / "tone.wav", seconds=0.1)
    for path, why in ((text, "Invalid data"), (png, "still image"), (wav, "no video stream")):
        for fn in (read_video_frames, video_info, count_video_frames, first_frame):
            with pytest.raises(VideoError, match=rf"^animation\.video_init_path: not a readable video: .*{why}"):
                fn(path)
    with pytest.raises(VideoError, match=r"^init: file not found"):
        read_video_frames(missing, setting="init")


def test_parse_probe_handles_rotation_and_missing_fields() -> None:
    report = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/x/phone.mp4':\n"
        "  Duration: N/A, start: 0.000000, bitrate: N/A\n"
        "  Stream #0:0[0x1](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, bt709), 1920x1080, "
        "29.97 fps, 29.97 tbr, 600 tbn (default)\n"
        "      Side data:\n"
        "        displaymatrix: rotation of -90.00 degrees\n"
        "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s\n"
    )
    info = video._parse_probe(report)
    assert info is not None
    assert (info.codec, info.pix_fmt, info.width, info.height) == ("hevc", "yuv420p", 1080, 1920)
    assert info.fps == pytest.approx(29.97) and info.duration is None and info.audio_codec == "aac"
    assert video._parse_probe("Input #0, wav, from 'a.wav':\n  Stream #0:0: Audio: pcm_s16le, 8000 Hz\n") is None


def test_threads_reach_ffmpeg_and_bad_counts_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import discolib.io.video as video_mod

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (i * 100, 0, 0)).save(frames / f"{i:06d}.png")
    seen: list[list[str]] = []
    real = video_mod._encode

    def spy(args: list[str], *rest: object) -> None:
        seen.append(args)
        real(args, *rest)

    monkeypatch.setattr(video_mod, "_encode", spy)
    out = video_mod.frames_to_video(frames, tmp_path / "v.mp4", fps=8, threads=1)
    assert out.is_file() and out.stat().st_size > 0
    args = seen[0]
    assert args[args.index("-filter_threads") + 1] == "1" and args[args.index("-threads") + 1] == "1"
    assert args.index("-filter_threads") < args.index("-i")  # a global option, before the inputs
    for bad in (0, -2, 1.5, True):
        with pytest.raises(VideoError, match="threads: expected an integer >= 1"):
            video_mod.frames_to_video(frames, tmp_path / "w.mp4", fps=8, threads=bad)  # type: ignore[arg-type]
