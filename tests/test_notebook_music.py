"""notebooks/music_video.ipynb beyond the rules every render notebook follows (test_notebooks.py checks its
structure, defaults, help and the nbval run): its default motion reads the music, and its music cell.

The notebook itself runs under nbval in test_notebooks.py (whose run checks the video's audio stream and the
analysis cache); the render of a whole song (``length_from_soundtrack``), the resume and the muxing are
test_render_audio.py's; here, the music cell's output.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_notebooks import parameters

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


def test_show_song_prints_the_summary_and_shows_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    """The notebook's music cell (show_song): the summary a reader sees (120 BPM, the frame count) and the plot."""
    import discolib_widgets.notebook as notebook_mod
    from discolib import Settings
    from discolib_widgets.notebook import show_song, soundtrack_source

    shown: list[object] = []
    monkeypatch.setattr(notebook_mod, "display", shown.append)
    seconds, fps = 4, 4
    settings = Settings.defaults("latent", "3D")
    settings.output.fps = fps
    settings.output.soundtrack = soundtrack_source("", str(tmp_path), seconds)  # the demo clip
    settings.animation.length_from_soundtrack = True
    show_song(settings)
    text = capsys.readouterr().out
    summary = ast.literal_eval(text.splitlines()[1])  # (after soundtrack_source's line)
    assert summary["tempo"] == pytest.approx(120, rel=0.05) and summary["n_frames"] == frames_for_duration(seconds, fps)
    assert summary["beats"] >= 3 and f"{summary['n_frames']} frames to render" in text
    (image,) = shown
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[attr-defined]
    settings.output.soundtrack = ""
    show_song(settings)
    assert "no soundtrack" in capsys.readouterr().out
