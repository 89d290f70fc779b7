"""``discolib animate`` and ``discolib.animate_photo`` end to end on a photo made here (flat "constant" depth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import discolib
from discolib.cli import main
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

