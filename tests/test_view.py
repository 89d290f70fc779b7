"""RenderView and render_here: the live preview, gallery, progress and video of a render in a notebook."""

from __future__ import annotations

import base64
import html
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.errors import InputError, ResourceLimitError
from discolib.io.files import encode_png
from discolib.io.video import frames_to_video
from discolib.run.events import RenderEvent, RenderResult
from discolib.run.runs import RunFolder
from discolib_widgets import view as view_module
from discolib_widgets.view import RenderView, format_duration, render_here, video_too_large


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _settings(tmp_path: Path, *, animation: str = "none", n: int = 3) -> Settings:
    s = apply_preset(Settings.defaults("latent", animation), "tiny-latent")
    s.set("run.output_root", str(tmp_path / "runs"))
    s.set("run.n_batches" if animation == "none" else "animation.max_frames", n)
    return s


def _fake_render(
    tmp_path: Path, *, n: int = 3, steps: int = 4, seeds: tuple[int, ...] = (7, 8, 9), video: bool = False,
    clock: FakeClock | None = None, calls: list[dict[str, Any]] | None = None,
) -> Callable[..., RenderResult]:
    """A render_fn that emits what the loop emits for ``n`` images of ``steps`` steps (a preview every 2 steps),
    writing each image as a real PNG, and returns a RenderResult of them."""

    def render_fn(settings: Settings, **kw: Any) -> RenderResult:
        if calls is not None:
            calls.append(kw)
        cb = kw["callback"]
        run = RunFolder.create(tmp_path / "fake", "batch", settings.to_json())
        cb(RenderEvent("start", frame=0, total_frames=n, path=run.path))
        frames = []
        for i in range(n):
            for s in range(1, steps + 1):
                if clock is not None:
                    clock.t += 1.0
                preview = torch.full((1, 3, 8, 8), s / steps) if s % 2 == 0 else None
                cb(RenderEvent("step", frame=i, total_frames=n, step=s, total_steps=steps, preview=preview))
            path = run.save_frame(i, np.full((8, 8, 3), 40 * i, np.uint8))
            frames.append(path)
            cb(RenderEvent("frame", frame=i, total_frames=n, path=path, seed=seeds[i]))
        cb(RenderEvent("done", frame=n, total_frames=n, path=run.path))
        out = frames_to_video(frames, run.path / "video.mp4", fps=4) if video else None
        return RenderResult(run.path, "done", frames, out, list(seeds[:n]))

    return render_fn


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """An IPython shell, so display() publishes outputs that capture_output records."""
    had = InteractiveShell.initialized()
    sh = InteractiveShell.instance()
    yield sh
    if not had:
        InteractiveShell.clear_instance()


def test_format_duration() -> None:
    assert [format_duration(x) for x in (0, 9.6, 75, 3599, 3600, 3725)] == ["0:00", "0:10", "1:15", "59:59", "1:00:00", "1:02:05"]


def test_progress_and_eta(tmp_path: Path) -> None:
    clock = FakeClock()
    view = RenderView(backend="widgets", clock=clock)
    view.start()
    view.stills = False  # an animation: "frame i/N" (render_here sets it from the settings)
    view(RenderEvent("start", frame=0, total_frames=4, path=tmp_path))
    st = view.state
    assert st.status == "rendering" and st.fraction == 0 and st.eta_s is None
    clock.t += 10
    view(RenderEvent("step", frame=0, total_frames=4, step=5, total_steps=10))
    # (0 complete frames + 5/10) / 4 frames; the ETA counts from this first step (before it: loading models)
    assert st.fraction == pytest.approx(0.125) and st.elapsed_s == pytest.approx(10) and st.eta_s is None
    assert st.text == "frame 1/4 · step 5/10 · 0:10 elapsed"
    assert view._bar.value == 125
    clock.t += 10
    view(RenderEvent("frame", frame=0, total_frames=4, path=view_png(tmp_path, 0)))
    # 10 s for 1/8 of the work since the first step, 6/8 to go: 60 s
    assert st.frames_done == 1 and st.fraction == pytest.approx(0.25) and st.eta_s == pytest.approx(60)
    assert st.text.endswith("0:20 elapsed · ETA 1:00") and "ETA 1:00" in view._label.value
    clock.t += 100
    view(RenderEvent("step", frame=1, total_frames=4, step=10, total_steps=10))
    view(RenderEvent("done", frame=4, total_frames=4, path=tmp_path))
    assert st.status == "done" and st.fraction == 1 and st.frames_done == 4 and st.eta_s == 0
    assert st.text.startswith("done: 4 frames in 2:00")


def view_png(tmp_path: Path, i: int, value: int = 50) -> Path:
    path = tmp_path / "frames" / f"{i:06d}.png"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(encode_png(np.full((8, 8, 3), value, np.uint8)))
    return path


def test_resumed_run_starts_at_its_frames(tmp_path: Path) -> None:
    clock = FakeClock()
    view = RenderView(backend="widgets", clock=clock)
    view.stills = False
    view(RenderEvent("start", frame=6, total_frames=8, path=tmp_path))
    assert view.state.frames_done == 6 and view.state.fraction == pytest.approx(0.75) and view._bar.value == 750
    clock.t += 30
    view(RenderEvent("step", frame=6, total_frames=8, step=1, total_steps=2))
    assert view.state.fraction == pytest.approx(13 / 16) and view.state.eta_s is None
    clock.t += 30
    view(RenderEvent("step", frame=6, total_frames=8, step=2, total_steps=2))
    # only the progress made since the resumed run's first step counts for the ETA: 1/16 in 30 s, 2/16 to go
    assert view.state.fraction == pytest.approx(14 / 16) and view.state.eta_s == pytest.approx(60)
    assert view.state.text == "frame 7/8 · step 2/2 · 1:00 elapsed · ETA 1:00"


def test_eta_ignores_model_loading(tmp_path: Path) -> None:
    """The loop emits "start" before it loads the models (and downloads weights): that time is not step time."""
    clock = FakeClock()
    view = RenderView(backend="widgets", clock=clock)
    view.stills = False
    view(RenderEvent("start", frame=0, total_frames=4, path=tmp_path))
    clock.t += 60  # loading
    for k in range(1, 11):  # then 1 step a second, 4 frames of 10 steps: 40 s of steps in all
        clock.t += 1
        view(RenderEvent("step", frame=(k - 1) // 10, total_frames=4, step=(k - 1) % 10 + 1, total_steps=10))
    st = view.state
    assert st.elapsed_s == pytest.approx(70)  # elapsed still counts from "start"
    assert st.eta_s == pytest.approx(30)  # 10 of 40 steps done in 10 s: 30 s to go (the loading left out)
    assert st.text.endswith("1:10 elapsed · ETA 0:30")
    # a resumed "start" (the same view, a second run) sets the ETA's origin again
    view(RenderEvent("start", frame=2, total_frames=4, path=tmp_path))
    clock.t += 100
    view(RenderEvent("step", frame=2, total_frames=4, step=1, total_steps=10))
    assert view.state.eta_s is None
    clock.t += 4
    view(RenderEvent("step", frame=2, total_frames=4, step=5, total_steps=10))
    assert view.state.eta_s == pytest.approx(15)  # 4 steps in 4 s, 15 of 20 to go


def test_stopped_is_resumable_only_with_a_complete_frame(tmp_path: Path) -> None:
    clock = FakeClock()
    view = RenderView(backend="widgets", clock=clock)
    view.stills = False
    view(RenderEvent("start", frame=0, total_frames=3, path=tmp_path))
    view(RenderEvent("step", frame=0, total_frames=3, step=1, total_steps=4))
    view(RenderEvent("stopped", frame=0, total_frames=3, path=tmp_path))
    assert view.state.status == "stopped" and ", resumable" not in view.state.text
    assert "0 of 3 frames done, nothing to resume" in view.state.text
    view.reset()
    view(RenderEvent("start", frame=0, total_frames=3, path=tmp_path))
    view.finish(None, KeyboardInterrupt())  # Ctrl-C in the render cell before the first frame
    assert view.state.status == "stopped" and ", resumable" not in view.state.text
    view.reset()
    view(RenderEvent("start", frame=0, total_frames=3, path=tmp_path))
    view(RenderEvent("frame", frame=0, total_frames=3, path=view_png(tmp_path, 0)))
    view(RenderEvent("stopped", frame=1, total_frames=3, path=tmp_path))
    assert "1 of 3 frames done, resumable" in view.state.text
    view.reset()
    view(RenderEvent("start", frame=2, total_frames=3, path=tmp_path))  # a resumed run: its earlier frames count
    view(RenderEvent("stopped", frame=2, total_frames=3, path=tmp_path))
    assert "2 of 3 frames done, resumable" in view.state.text


def test_preview_only_from_previews_and_frames_and_throttled(tmp_path: Path) -> None:
    clock = FakeClock()
    view = RenderView(backend="widgets", clock=clock)
    view(RenderEvent("start", frame=0, total_frames=2, path=tmp_path))
    assert view._preview.layout.display == "none"  # no broken-image icon before there are pixels
    clock.t += 1
    view(RenderEvent("step", frame=0, total_frames=2, step=1, total_steps=4))
    assert view.state.preview_png is None and view._preview.layout.display == "none"
    clock.t += 1
    view(RenderEvent("step", frame=0, total_frames=2, step=2, total_steps=4, preview=torch.zeros(1, 3, 4, 4)))
    assert view.state.preview_png == encode_png(torch.zeros(1, 3, 4, 4))
    assert view._preview.value == view.state.preview_png and view._preview.layout.display is None
    # a preview 0.05 s later is kept, not encoded or drawn, until the next redraw
    clock.t += 0.05
    view(RenderEvent("step", frame=0, total_frames=2, step=3, total_steps=4, preview=torch.ones(1, 3, 4, 4)))
    assert view.state.step == 3 and view._bar.value == 250  # state moved (3/8), bar still at 2/8
    assert view.state.preview_png == encode_png(torch.zeros(1, 3, 4, 4))
    clock.t += 0.5
    view(RenderEvent("step", frame=0, total_frames=2, step=4, total_steps=4))
    assert view.state.preview_png == encode_png(torch.ones(1, 3, 4, 4)) and view._bar.value == 500
    # a written frame shows its PNG file as it is (no re-encode), at once
    png = view_png(tmp_path, 0, value=123)
    clock.t += 0.01
    view(RenderEvent("frame", frame=0, total_frames=2, path=png, seed=5))
    assert view.state.preview_png == png.read_bytes() == view._preview.value


def test_animation_frames_redraw_at_most_five_times_a_second(tmp_path: Path) -> None:
    clock = FakeClock()
    view = RenderView(backend="widgets", clock=clock)
    view.stills = False
    view(RenderEvent("start", frame=0, total_frames=3, path=tmp_path))
    frames = [view_png(tmp_path, i, value=10 + 50 * i) for i in range(3)]
    clock.t += 1
    view(RenderEvent("frame", frame=0, total_frames=3, path=frames[0], seed=1))
    assert view._preview.value == frames[0].read_bytes() and view._bar.value == 333
    clock.t += 0.02  # cadence: the next frame a moment later is counted, its file not read or sent yet
    view(RenderEvent("frame", frame=1, total_frames=3, path=frames[1], seed=1))
    assert view.state.frames_done == 2 and view._preview.value == frames[0].read_bytes() and view._bar.value == 333
    clock.t += 0.3
    view(RenderEvent("frame", frame=2, total_frames=3, path=frames[2], seed=1))
    assert view._preview.value == frames[2].read_bytes() and view._bar.value == 1000
    assert view.state.gallery == []  # an animation's frames show in the preview, not in a gallery


def test_view_never_raises(tmp_path: Path) -> None:
    view = RenderView(backend="widgets", clock=FakeClock())
    view(RenderEvent("start", frame=0, total_frames=1, path=tmp_path))
    view(RenderEvent("frame", frame=0, total_frames=1, path=tmp_path / "gone.png", seed=1))
    assert "preview problem" in view.state.text and "gone.png" in view.state.text
    assert "preview problem" in view._label.value


def test_render_here_batch_gallery_and_arguments(tmp_path: Path) -> None:
    clock = FakeClock()
    calls: list[dict[str, Any]] = []
    view = RenderView(backend="widgets", clock=clock)
    result = render_here(
        _settings(tmp_path), view=view, render_fn=_fake_render(tmp_path, clock=clock, calls=calls)
    )
    assert calls[0]["callback"] is view and calls[0]["progress"] is False and calls[0]["stop"] is None
    assert "resume" not in calls[0] and "force" not in calls[0] and "out" not in calls[0]
    st = view.state
    assert [c for _, c in st.gallery] == ["seed 7 · image 1/3", "seed 8 · image 2/3", "seed 9 · image 3/3"]
    assert [png for png, _ in st.gallery] == [p.read_bytes() for p in result.frames]
    assert len(view._gallery_box.children) == 3
    assert st.status == "done" and st.text.startswith("done: 3 images in 0:12 · ") and view._bar.bar_style == "success"
    assert st.preview_png == result.frames[-1].read_bytes() and st.video is None


def test_gallery_keeps_the_last_gallery_size(tmp_path: Path) -> None:
    view = RenderView(backend="widgets", gallery_size=2, clock=FakeClock())
    view.stills = True
    render_here(_settings(tmp_path), view=view, render_fn=_fake_render(tmp_path))
    assert [c for _, c in view.state.gallery] == ["seed 8 · image 2/3", "seed 9 · image 3/3"]
    assert len(view._gallery_box.children) == 2


def _live_widgets() -> int:
    """How many widgets the kernel holds (ipywidgets' registry: a widget stays there until closed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Widget.widgets: deprecated, still the registry
        return len(widgets.Widget.widgets)


def _stills(view: RenderView, tmp_path: Path, n: int) -> list[int]:
    """Feed ``n`` finished stills to ``view``; the live widget count after each."""
    counts = []
    view.start()
    view.stills = True
    view(RenderEvent("start", frame=0, total_frames=n, path=tmp_path))
    for i in range(n):
        view(RenderEvent("frame", frame=i, total_frames=n, path=view_png(tmp_path, i, value=i), seed=i))
        counts.append(_live_widgets())
    return counts


def test_gallery_widgets_grow_linearly_and_are_closed(tmp_path: Path) -> None:
    view = RenderView(backend="widgets", clock=FakeClock())
    base = _live_widgets()
    counts = _stills(view, tmp_path, 20)
    per_still = counts[1] - counts[0]
    assert 0 < per_still <= 10
    # each still adds its own thumbnail's widgets, once (rebuilding every thumbnail made 1470 widgets for 20)
    assert [counts[i + 1] - counts[i] for i in range(19)] == [per_still] * 19
    assert len(view._gallery_box.children) == 20 and counts[-1] - base == 20 * per_still
    first = view._gallery_box.children[0]
    view(RenderEvent("frame", frame=19, total_frames=20, path=view_png(tmp_path, 19), seed=19))
    assert view._gallery_box.children[0] is first  # thumbnails already shown are kept, not remade
    view.reset()
    assert view._gallery_box.children == () and _live_widgets() == base
    assert first.comm is None and first.children[0].comm is None  # closed, in the browser too

    # the gallery's trim closes the thumbnails it drops
    small = RenderView(backend="widgets", gallery_size=3, clock=FakeClock())
    base = _live_widgets()
    counts = _stills(small, tmp_path, 20)
    assert counts[-1] == counts[2] and counts[-1] - base == 3 * per_still
    assert [c for _, c in small.state.gallery] == ["seed 17 · image 18/20", "seed 18 · image 19/20", "seed 19 · image 20/20"]
    assert [t.children[1].value for t in small._gallery_box.children] == [
        f"<span style='font-family:monospace;font-size:11px'>{html.escape(c)}</span>" for _, c in small.state.gallery
    ]
    small.reset()
    assert _live_widgets() == base


def test_animation_shows_video_not_gallery(tmp_path: Path) -> None:
    view = RenderView(backend="widgets", clock=FakeClock())
    result = render_here(
        _settings(tmp_path, animation="2D"), view=view, render_fn=_fake_render(tmp_path, video=True)
    )
    assert result.video is not None and view.state.video == result.video
    assert view.state.gallery == [] and view._gallery_box.children == ()
    (video,) = view._video_box.children
    assert video.value == result.video.read_bytes() and video.format == "mp4"
    view.reset()
    assert view._video_box.children == () and view.state.status == "waiting" and view._bar.value == 0
    assert video.comm is None  # the video's bytes (up to MAX_EMBED_BYTES) are not kept by a closed widget


def test_large_video_is_named_not_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(b"\0" * 2048)
    monkeypatch.setattr(view_module, "MAX_EMBED_BYTES", 1024)
    text = video_too_large(path)
    assert text is not None and str(path) in text and "too large" in text
    assert view_module.video_bundle(path)["text/plain"] == text
    assert view_module._video_widget(path).value == html.escape(text)
    monkeypatch.setattr(view_module, "MAX_EMBED_BYTES", 4096)
    assert video_too_large(path) is None


@pytest.mark.parametrize("backend", ["widgets", "display"])
def test_events_from_other_threads(tmp_path: Path, shell: InteractiveShell, backend: str) -> None:
    """In a real render steps come from the render thread and frames from the frame writer's thread, concurrently;
    neither is the notebook's main thread."""
    n, steps = 6, 5
    view = RenderView(backend=backend, gallery_size=4)  # type: ignore[arg-type]
    written: queue.Queue[Path | None] = queue.Queue()

    def render_thread() -> None:
        view(RenderEvent("start", frame=0, total_frames=n, path=tmp_path))
        for i in range(n):
            for s in range(1, steps + 1):
                view(RenderEvent("step", frame=i, total_frames=n, step=s, total_steps=steps,
                                 preview=torch.full((1, 3, 8, 8), s / steps)))
            written.put(view_png(tmp_path, i, value=30 * i))
        written.put(None)

    def writer_thread() -> None:
        i = 0
        while (path := written.get()) is not None:
            view(RenderEvent("frame", frame=i, total_frames=n, path=path, seed=10 + i))
            i += 1

    with capture_output() as captured:
        view.start()
        view.stills = True
        threads = [threading.Thread(target=render_thread), threading.Thread(target=writer_thread)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        view(RenderEvent("done", frame=n, total_frames=n, path=tmp_path))
        view.finish(None)
    st = view.state
    assert "problem" not in st.text and st.status == "done" and st.frames_done == n
    assert [c for _, c in st.gallery] == [f"seed {10 + i} · image {i + 1}/{n}" for i in range(n - 4, n)]
    assert st.preview_png == view_png(tmp_path, n - 1, value=30 * (n - 1)).read_bytes()
    if backend == "widgets":
        assert view._bar.value == 1000 and view._preview.value == st.preview_png
        assert [t.children[0].value for t in view._gallery_box.children] == [png for png, _ in st.gallery]
    else:
        stills = [o for o in _outputs(captured) if "image/png" in o["data"] and o["data"]["text/plain"].startswith("seed ")]
        assert [o["data"]["text/plain"] for o in stills] == [f"seed {10 + i} · image {i + 1}/{n}" for i in range(n)]
        progress = [o for o in _outputs(captured) if "<progress" in o["data"].get("text/html", "")]
        assert progress[-1]["data"]["text/plain"].startswith("100% done: 6 images")


def test_resume_argument(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    older = RunFolder.create(tmp_path / "runs", "tiny-latent", s.to_json(), run_id="20260101-000000")
    newer = RunFolder.create(tmp_path / "runs", "tiny-latent", s.to_json(), run_id="20260102-000000")
    assert s.run.batch_name == "tiny-latent"
    calls: list[dict[str, Any]] = []
    fake = _fake_render(tmp_path, calls=calls)
    render_here(s, resume="latest", render_fn=fake, view=RenderView(backend="widgets"), force=True)
    assert calls[-1]["resume"] == newer.path and calls[-1]["force"] is True
    render_here(s, resume=str(older.path), render_fn=fake, view=RenderView(backend="widgets"))
    assert calls[-1]["resume"] == older.path
    # out overrides run.output_root, as in render(): "latest" looks there
    other = RunFolder.create(tmp_path / "elsewhere", "tiny-latent", s.to_json(), run_id="20250101-000000")
    render_here(s, out=tmp_path / "elsewhere", resume="latest", render_fn=fake, view=RenderView(backend="widgets"))
    assert calls[-1]["resume"] == other.path and calls[-1]["out"] == tmp_path / "elsewhere"


def test_user_errors_show_one_line(tmp_path: Path) -> None:
    def bad(settings: Settings, **kw: Any) -> RenderResult:
        raise InputError("image.width: 100 is not a multiple of 64")

    view = RenderView(backend="widgets", clock=FakeClock())
    with pytest.raises(InputError) as info:
        render_here(_settings(tmp_path), view=view, render_fn=bad)
    assert type(info.value) is InputError
    assert info.value._render_traceback_() == ["InputError: image.width: 100 is not a multiple of 64"]
    assert view.state.status == "failed" and view.state.text == "failed after 0:00: image.width: 100 is not a multiple of 64"
    assert view._bar.bar_style == "danger"

    def too_big(settings: Settings, **kw: Any) -> RenderResult:
        raise ResourceLimitError("this run needs 90 GB")

    with pytest.raises(ResourceLimitError) as info2:
        render_here(_settings(tmp_path), view=RenderView(backend="widgets"), render_fn=too_big)
    (line,) = info2.value._render_traceback_()
    assert line.startswith("ResourceLimitError: this run needs 90 GB") and "force=True" in line

    with pytest.raises(InputError, match="no runs to resume") as info3:  # the resume parameter's error too
        render_here(_settings(tmp_path), resume="latest", view=RenderView(backend="widgets"), render_fn=bad)
    assert "no runs to resume" in info3.value._render_traceback_()[0]

    def bug(settings: Settings, **kw: Any) -> RenderResult:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError) as info4:
        render_here(_settings(tmp_path), view=RenderView(backend="widgets"), render_fn=bug)
    assert not hasattr(info4.value, "_render_traceback_")  # a bug keeps its traceback


def _outputs(captured: Any) -> list[dict[str, Any]]:
    return [o for o in captured._outputs]


def test_display_backend_updates_in_place(tmp_path: Path, shell: InteractiveShell) -> None:
    clock = FakeClock()
    with capture_output() as captured:
        result = render_here(
            _settings(tmp_path, animation="none"), render_fn=_fake_render(tmp_path, clock=clock, video=True)
        )
    outs = _outputs(captured)
    ids = [(o.get("transient") or {}).get("display_id") for o in outs]
    first = outs[0]
    progress_id = ids[0]
    assert progress_id and first["update"] is False and "<progress" in first["data"]["text/html"]
    progress = [o for o, i in zip(outs, ids, strict=True) if i == progress_id]
    # one progress output, updated (never appended): the saved notebook holds the final text
    assert [o["update"] for o in progress] == [False] + [True] * (len(progress) - 1) and len(progress) > 3
    assert progress[-1]["data"]["text/plain"].startswith("100% done: 3 images in ")
    preview = [o for o in outs if o["data"].get("text/plain") == "preview"]
    assert preview and preview[0]["update"] is False and all(o["update"] for o in preview[1:])
    assert len({(o["transient"] or {})["display_id"] for o in preview}) == 1
    assert base64.b64decode(preview[-1]["data"]["image/png"]) == result.frames[-1].read_bytes()
    # each finished still is its own output, kept, with its seed
    stills = [o for o in outs if "image/png" in o["data"] and o["data"]["text/plain"].startswith("seed ")]
    assert [o["data"]["text/plain"] for o in stills] == ["seed 7 · image 1/3", "seed 8 · image 2/3", "seed 9 · image 3/3"]
    assert all(not o["update"] and not (o["transient"] or {}).get("display_id") for o in stills)
    assert [base64.b64decode(o["data"]["image/png"]) for o in stills] == [p.read_bytes() for p in result.frames]
    # the video at the end, embedded
    (video,) = [o for o in outs if o["data"].get("text/plain", "").startswith("video: ")]
    assert "data:video/mp4;base64," in video["data"]["text/html"] and not video["update"]
    assert not any("VBox" in str(o["data"].get("text/plain")) for o in outs)


@pytest.mark.slow
def test_real_tiny_render_shows_stills_with_their_seeds(tmp_path: Path, one_thread: None) -> None:
    s = apply_preset(Settings.defaults("latent"), "tiny-latent")
    s.set("run.n_batches", 2)
    view = RenderView(backend="widgets")
    result = render_here(s, out=tmp_path, view=view)
    st = view.state
    assert result.status == "done" and result.seeds == [42, 43]
    assert [c for _, c in st.gallery] == ["seed 42 · image 1/2", "seed 43 · image 2/2"]
    assert [png for png, _ in st.gallery] == [p.read_bytes() for p in result.frames]
    assert st.status == "done" and st.fraction == 1 and st.preview_png == result.frames[-1].read_bytes()
    assert st.run_dir == result.run_dir and view._bar.value == 1000
