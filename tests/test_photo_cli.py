"""``discolib animate`` and ``discolib.animate_photo`` end to end on a photo made here (flat "constant" depth)."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

import discolib
from discolib.cli import main
from discolib.errors import InputError
from discolib.io.video import count_video_frames, probe_video


@pytest.fixture
def photo(tmp_path):
    v, u = np.mgrid[0:40, 0:48]
    img = np.stack([u * 5, v * 6, (u + v) * 2], -1).astype(np.uint8)
    img[12:28, 16:32] = (240, 40, 30)
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path / "cache"))


def test_animate_writes_the_video_and_its_frames_beside_it(photo, tmp_path, capsys) -> None:
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    rc = main(["animate", str(photo), "--camera", "orbit", "--seconds", "1", "--fps", "8", "--depth-model", "constant",
               "-o", str(out)])
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    probe = probe_video(out)
    assert (probe.width, probe.height) == (48, 40)
    assert count_video_frames(out) == 8
    # Nothing outside the video's folder but the depth cache; the frames are in one run folder beside the video.
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip-frames", "clip.mp4"]
    (run,) = (out.parent / "clip-frames").iterdir()
    assert len(list((run / "frames").glob("*.png"))) == 8
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and record["frames_done"] == 8
    settings = json.loads((run / "settings.json").read_text())
    assert settings["camera"] == "orbit" and "rotation_3d_y" in settings["schedules"]
    assert (run / "depth.png").is_file()
    assert list((tmp_path / "cache" / "depth").glob("*.npy"))


def test_animate_photo_in_python_with_a_path_file_and_stereo(photo, tmp_path) -> None:
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"translation_x": "0: (2)", "rotation_3d_y": "0: (-0.1)"}))
    calls = []
    result = discolib.animate_photo(photo, tmp_path / "sbs.mp4", camera=str(path), seconds=0.5, fps=8,
                                    depth_model="constant", stereo="sbs", callback=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 4) for i in range(1, 5)]
    probe = probe_video(result.video)
    assert (probe.width, probe.height) == (96, 40)  # left | right
    assert result.schedules["translation_x"] == "0: (2)"
    assert result.fill == "opencv"  # "auto" without a latent model
    assert result.depth.shape == (40, 48) and len(result.frames) == 4
    first = np.asarray(Image.open(result.frames[0]))
    assert not np.array_equal(first[:, :48], first[:, 48:])  # the eyes see the photo from two places


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--camera", "orbt"], "did you mean 'orbit'"),
        (["--seconds", "abc"], "--seconds"),
        (["--fps", "-1"], "--fps"),
    ],
)
def test_bad_options_are_one_line_errors(photo, tmp_path, capsys, args, words) -> None:
    rc = main(["animate", str(photo), "--depth-model", "constant", "-o", str(tmp_path / "x.mp4"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1 and err.startswith("discolib: error:")


@pytest.mark.parametrize("kind", ["not-an-image", "1x1"])
def test_bad_photo_is_a_one_line_error(tmp_path, capsys, kind) -> None:
    bad = tmp_path / "bad.png"
    if kind == "1x1":
        Image.new("RGB", (1, 1)).save(bad)
    else:
        bad.write_bytes(b"this is not a picture\n" * 10)
    out = tmp_path / "x.mp4"
    rc = main(["animate", str(bad), "--depth-model", "constant", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("discolib: error:") and "photo" in err
    assert not out.exists() and not (tmp_path / "x-frames").exists()



@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--size", "8"], "--size"),
        (["--size", "5000"], "--size"),
        (["--fps", "0.0001"], "--fps"),
        (["--fps", "1000"], "--fps"),
    ],
)
def test_size_and_fps_are_bounded(photo, tmp_path, capsys, args, words) -> None:
    out = tmp_path / "x.mp4"
    rc = main(["animate", str(photo), "--depth-model", "constant", "-o", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and "max_side" not in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "x-frames").exists()
    with pytest.raises(InputError, match="^(size|fps): "):
        discolib.animate_photo(photo, out, depth_model="constant", size=int(args[1]) if args[0] == "--size" else None,
                               fps=float(args[1]) if args[0] == "--fps" else 24.0, seconds=0.5)


@pytest.mark.parametrize("value", ["1" + "0" * 400, '"0: (1e308)"'])
def test_overflowing_camera_path_is_a_one_line_error(photo, tmp_path, capsys, value) -> None:
    path = tmp_path / "path.json"
    path.write_text('{"translation_x": ' + value + "}")
    out = tmp_path / "x.mp4"
    rc = main(["animate", str(photo), "--camera", str(path), "--depth-model", "constant", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(path) in err and "translation_x" in err
    assert not out.exists() and not (tmp_path / "x-frames").exists()


def test_a_failing_background_layer_leaves_no_run_folder(photo, tmp_path, monkeypatch) -> None:
    from discolib.run import photo as run_photo

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C during the (latent) fill

    monkeypatch.setattr(run_photo, "background_layer", broken)
    with pytest.raises(KeyboardInterrupt):
        discolib.animate_photo(photo, tmp_path / "x.mp4", depth_model="constant", seconds=0.5, fps=8)
    assert not (tmp_path / "x-frames").exists() and not (tmp_path / "x.mp4").exists()


def test_a_failure_after_the_run_folder_is_made_is_recorded(photo, tmp_path, monkeypatch) -> None:
    from discolib.run import photo as run_photo

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_photo, "save_depth_png", broken)
    with pytest.raises(OSError, match="disk full"):
        discolib.animate_photo(photo, tmp_path / "x.mp4", depth_model="constant", seconds=0.5, fps=8)
    (run,) = (tmp_path / "x-frames").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "disk full" in record["error"]


def test_extra_outputs_expand_home_and_are_checked_before_the_render(photo, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    out = tmp_path / "x.mp4"
    with pytest.raises(InputError, match="^point_cloud: .*does not exist"):
        discolib.animate_photo(photo, out, depth_model="constant", seconds=0.25, fps=8,
                               point_cloud=tmp_path / "missing" / "p.ply")
    assert not out.exists() and not (tmp_path / "x-frames").exists()
    result = discolib.animate_photo(photo, out, depth_model="constant", seconds=0.25, fps=8, mesh="~/m.glb")
    assert result.mesh == tmp_path / "home" / "m.glb" and result.mesh.is_file()
    assert not (tmp_path / "~").exists()


def test_stereo_left_eye_is_on_the_left(tmp_path) -> None:
    # A plane at depth 1 ("constant"): the left eye (half a baseline to the left) sees it shifted right, the right
    # eye shifted left; the side-by-side frame is left | right.
    img = np.full((120, 160, 3), 20, np.uint8)
    img[:, 70:90] = 230
    path = tmp_path / "bar.png"
    Image.fromarray(img).save(path)
    result = discolib.animate_photo(path, tmp_path / "sbs.mp4", depth_model="constant", seconds=0.125, fps=8,
                                    stereo="sbs")
    frame = np.asarray(Image.open(result.frames[0]), dtype=np.float64)[..., 0]
    cols = np.arange(160)

    def centre(view: np.ndarray) -> float:
        weight = (view - 20.0).clip(min=0).sum(axis=0)
        return float((weight * cols).sum() / weight.sum())

    f = 60.0 / math.tan(math.radians(27.5))
    half_shift = f * 0.05 / 2  # STEREO_BASELINE * near (1) / 2, in pixels at depth 1
    left, right, photo_centre = centre(frame[:, :160]), centre(frame[:, 160:]), 79.5
    assert left - photo_centre == pytest.approx(half_shift, abs=0.3)
    assert photo_centre - right == pytest.approx(half_shift, abs=0.3)


def test_animate_device_option(tmp_path: pathlib.Path) -> None:
    """--device picks where the depth model and warps run; a bad or absent device is one line naming --device."""
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "v.mp4"
    assert main(["animate", str(photo), "--device", "cpu", "--seconds", "0.5", "--fps", "4",
                 "--depth-model", "constant", "-o", str(out)]) == 0
    assert out.is_file()
    bad = tmp_path / "bad.mp4"
    assert main(["animate", str(photo), "--device", "tpu:7", "--depth-model", "constant", "-o", str(bad)]) == 2
    assert not bad.exists()
