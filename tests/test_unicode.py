"""Text in any script where users type it: batch folder names, contact-sheet and plot labels, CLI output."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from discolib.io import fonts
from discolib.io.files import NAME_MAX_BYTES, safe_folder_name
from discolib.io.sheets import contact_sheet

CJK = "城堡の夜"
ARABIC = "رحلة إلى القمر"


# ---------------------------------------------------------------------------------------------- folder names


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("城堡 night/..:*?", "城堡 night_.._"),  # separators and reserved characters go, the text stays
        (ARABIC, ARABIC),
        ("café 🌙 ночь", "café 🌙 ночь"),
        ("..", "__"),
        (".hidden", "_hidden"),
        ("a\\b\x00c\nd\x7fe", "a_b_c_d_e"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("COM1", "_COM1"),
        ("name. . ", "name"),  # Windows drops trailing dots and spaces
        ("", "_"),
        ("///", "_"),
        ("bad\udcffbytes", "bad_bytes"),
        ("e\u0301", "\u00e9"),  # NFC: one name however the keyboard composed it
    ],
)
def test_safe_folder_name_keeps_readable_text(typed: str, expected: str) -> None:
    assert safe_folder_name(typed) == expected


@pytest.mark.parametrize("typed", ["城堡 night/..:*?", "..", "CON", "a/../../etc", "x" * 300, "夜" * 200, " .", "\x00"])
def test_safe_folder_names_can_be_created_inside_their_folder(tmp_path: Path, typed: str) -> None:
    name = safe_folder_name(typed)
    assert len(name.encode("utf-8")) <= NAME_MAX_BYTES
    assert name not in (".", "..") and "/" not in name and "\\" not in name
    folder = tmp_path / name
    folder.mkdir()
    assert folder.parent == tmp_path and folder.is_dir()
    assert safe_folder_name(name) == name  # already safe: unchanged


def test_long_names_are_cut_at_a_character_boundary() -> None:
    for text in ("夜" * 200, "🌙" * 100, "a" + "é" * 200):
        name = safe_folder_name(text)
        raw = name.encode("utf-8")
        assert len(raw) <= NAME_MAX_BYTES and len(raw) > NAME_MAX_BYTES - 4
        assert text.startswith(name)  # a prefix of whole characters
    assert len(safe_folder_name("夜" * 200, max_bytes=10).encode()) == 9


# ---------------------------------------------------------------------------------------------- labels


def _ink(text: str, size: int = 24) -> np.ndarray:
    im = Image.new("L", (40 * size, 2 * size))
    fonts.draw_label(ImageDraw.Draw(im), (2, 2), text, size=size, fill=255)
    return np.asarray(im)


def _glyph(text: str, font: object, size: int = 24) -> np.ndarray:
    im = Image.new("L", (4 * size, 2 * size))
    ImageDraw.Draw(im).text((2, 2), text, font=font, fill=255)
    return np.asarray(im)


def test_the_cjk_font_comes_from_its_package() -> None:
    path = fonts.cjk_font_file()
    assert path is not None and path.suffix == ".ttc" and path.stat().st_size > 10_000_000
    assert fonts.CJK_FONT_FAMILY in fonts.label_font_families()


@pytest.mark.parametrize("char", ["城", "の", "简", "体", "한", "ك"])
def test_label_glyphs_are_real_not_boxes(char: str) -> None:
    """Each character is drawn with a font that has it: its pixels differ from the missing-glyph box."""
    index = fonts._font_index_for(char, 24)
    font = fonts._pil_fonts(24)[index]
    drawn, box = _glyph(char, font), _glyph("\U0010ffff", font)
    assert drawn.any() and not np.array_equal(drawn, box)


def test_cjk_and_arabic_labels_draw_and_are_cut_to_fit() -> None:
    mixed = f"{CJK} night {ARABIC}"
    ink = _ink(mixed)
    assert ink.any()
    assert not np.array_equal(_ink(CJK), _ink("城堡の昼"))  # different characters, different pixels
    assert fonts.text_width(mixed, 24) > fonts.text_width(CJK, 24) > 0
    im = Image.new("L", (400, 40))
    fonts.draw_label(ImageDraw.Draw(im), (0, 0), mixed * 5, size=24, fill=255, max_width=200)
    assert not np.asarray(im)[:, 202:].any()  # nothing drawn past max_width


def test_contact_sheet_labels_each_thumbnail() -> None:
    images = [Image.new("RGB", (64, 48), (200, 0, 0)), Image.new("RGB", (32, 32), (0, 200, 0)), Image.new("RGB", (50, 50))]
    sheet = contact_sheet(images, [CJK, ARABIC, "frame 3"], thumb=64, label_size=12)
    assert sheet.size == (2 * 72, 2 * (72 + 20))
    label_strip = np.asarray(sheet.convert("L"))[72 : 72 + 20, :72]
    assert (label_strip > 100).any()  # the CJK label's glyphs are there
    with pytest.raises(Exception, match="label"):
        contact_sheet(images, ["one"])


def test_labels_draw_without_the_font_package_and_without_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without noto-cjk-sans-otc the labels fall back to DejaVu Sans / Pillow's font: no error, no warning."""
    for cached in (fonts.cjk_font_file, fonts.label_font_families, fonts._pil_fonts, fonts._font_index_for):
        cached.cache_clear()
    monkeypatch.setitem(sys.modules, "noto_cjk_sans_otc", None)  # as if not installed: find_spec gives None
    try:
        assert fonts.cjk_font_file() is None and fonts.label_font_families() == ("DejaVu Sans",)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _ink(f"{CJK} {ARABIC} abc").any()
            contact_sheet([Image.new("RGB", (8, 8))], [CJK])
    finally:
        monkeypatch.undo()
        for cached in (fonts.cjk_font_file, fonts.label_font_families, fonts._pil_fonts, fonts._font_index_for):
            cached.cache_clear()


def test_schedule_plot_renders_cjk_and_arabic_labels_without_missing_glyphs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from discolib.schedules.keyframes import StringSchedule
    from discolib.schedules.plot import plot_schedule

    sched = StringSchedule.parse(f"0: ({CJK}), 3: ({ARABIC}), 5: (plain)", setting="提示词")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plot_schedule(sched, 8, path=str(tmp_path / "p.png"))
        fig.canvas.draw()  # the notebook panel draws the figure itself, outside plot_schedule's savefig
    assert not [w for w in caught if "missing from font" in str(w.message)]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert CJK in labels and ARABIC in labels and fig.axes[0].get_title() == "提示词"
    assert (tmp_path / "p.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------------- CLI output


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_cli_prints_non_ascii_text_on_a_narrow_console(tmp_path: Path, encoding: str) -> None:
    """Prompts, batch names and paths in any script never crash the CLI when its console is ASCII or cp1252."""
    env = {**os.environ, "PYTHONIOENCODING": encoding, "HF_HUB_OFFLINE": "1"}
    name = f"{CJK}.json"
    cmd = [sys.executable, "-m", "discolib.cli", "init", "--preset", "tiny-latent", "--set",
           f'text_prompts={{"0": "{CJK} {ARABIC}"}}', "--set", f"batch_name={CJK}", "-o", name]
    made = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr.decode(encoding, "replace")
    assert "\\u57ce\\u5821" in made.stdout.decode(encoding)  # the file name, escaped rather than a crash
    checked = subprocess.run([sys.executable, "-m", "discolib.cli", "validate", name], cwd=tmp_path, env=env,
                             capture_output=True, timeout=120)
    assert checked.returncode == 0 and b"ok (latent mode" in checked.stdout
    missing = subprocess.run([sys.executable, "-m", "discolib.cli", "validate", f"{ARABIC}.json"], cwd=tmp_path,
                             env=env, capture_output=True, timeout=120)
    assert missing.returncode == 2 and b"Traceback" not in missing.stderr
    assert b"not found" in missing.stderr and b"\\u0631" in missing.stderr


def test_a_batch_name_in_any_script_becomes_a_readable_run_folder(tmp_path: Path) -> None:
    from discolib import RunFolder, Settings, apply_preset

    s = apply_preset(Settings.defaults("latent"), "tiny-latent")
    s.set("run.batch_name", "城堡 night/..:*?")
    s.validate()
    f = RunFolder.create(tmp_path, s.run.batch_name, s.to_json())
    assert f.path.parent == tmp_path / "城堡 night_.._"
    assert RunFolder.latest(tmp_path, s.run.batch_name).path == f.path
