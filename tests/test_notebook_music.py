"""notebooks/music_video.ipynb beyond the rules every render notebook follows (test_notebooks.py checks its
structure, defaults, help and the nbval run): its default motion reads the music, and one papermill run.

The papermill run renders the demo clip the notebook synthesises (2 s at 4 fps, tiny-latent, 3D) and checks what a
user gets: every frame of a video exactly as long as the clip (``length_from_soundtrack``), the video with the
clip's audio stream and a player with sound, the features' summary and plot, the render's analysis cache, and
nothing written outside ``output_root``. The helpers and kernel fixtures are test_notebooks.py's (imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_notebooks import (
    cell_display,
    check_run,
    code_cells,
    execute,
    executed_check_output,
    kernel_env,  # noqa: F401 (a fixture, used by name)
    only_run,
    parameters,
    python3_kernel,  # noqa: F401 (a fixture kernel_env needs)
)

from discolib.audio import frames_for_duration
from discolib.schedules.keyframes import Schedule
from discolib.schedules.prompts import PromptSchedule

NAME = "music_video.ipynb"


def test_music_notebook_defaults_read_the_music() -> None:
    """The default motion strings and prompt keys parse and read the soundtrack (what the notebook demonstrates)."""
    params = {name: p["value"] for name, p in parameters(NAME).items()}
    for name in ("zoom", "translation_z", "angle"):
        assert Schedule.parse(params[name], setting=name).uses_audio, name
    assert PromptSchedule.from_deforum(params["text_prompts"], setting="text_prompts").uses_audio


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_music_video(tmp_path: Path) -> None:
    from discolib.io.video import video_info

    out_root = tmp_path / "out"
    seconds, fps = 2, 4
    params = {"output_root": str(out_root), "max_seconds": seconds, "fps": fps}
    nb = execute(NAME, tmp_path / "music.out.ipynb", params, tmp_path)
    assert executed_check_output(nb) == "done True\n"

    n_frames = frames_for_duration(seconds, fps)  # the animation is as long as the clip
    folder = only_run(out_root, "MusicVideo")
    settings = check_run(folder, n_frames, video=True)
    demo = out_root / "music" / "demo-120bpm.wav"
    assert settings.animation.length_from_soundtrack and settings.output.soundtrack == str(demo)
    assert settings.image.mode == "latent" and settings.models.latent_model == "tiny-latent"
    assert settings.animation.animation_mode == "3D" and settings.output.fps == fps
    # The render's analysis cache (.cache/audio/<sha256>-v<N>.npz): what a resume reads instead of analysing again.
    assert len(list((out_root / "MusicVideo" / ".cache" / "audio").glob("*.npz"))) == 1
    (video,) = folder.path.glob("video.*")
    info = video_info(video)
    assert info["has_audio"] is True and info["n_frames"] == n_frames
    assert info["duration"] == pytest.approx(seconds, abs=0.3)
    # The clip is written inside output_root; nothing else lands beside it (papermill's cwd is tmp_path).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["music.out.ipynb", "out"]
    assert sorted(p.name for p in out_root.iterdir()) == ["MusicVideo", "music"]

    # What a reader of the output notebook sees: the summary (120 BPM), the features plot, the video with sound.
    (song_cell,) = [c for c in code_cells(nb) if "show_song(settings)" in c.source]
    text = "".join(o.get("text", "") for o in song_cell.outputs if o.output_type == "stream")
    summary = ast.literal_eval(text.splitlines()[0])
    assert summary["tempo"] == pytest.approx(120, rel=0.05) and summary["n_frames"] == n_frames
    assert summary["beats"] >= 3 and summary["bars"] >= 1
    assert f"{n_frames} frames to render" in text
    assert "image/png" in cell_display(nb, "show_song(")[0]
    mimes, html = cell_display(nb, "render_here(")
    assert "<video controls " in html and "muted" not in html and "data:video/mp4;base64," in html, mimes
