"""Fonts for labels that users type in any language: contact sheets (PIL) and schedule plots (matplotlib).

Prompts and setting names reach labels as typed, in Chinese, Japanese, Korean, Arabic and so on. The fonts that
Pillow and matplotlib bring cover Latin (and, for matplotlib's DejaVu Sans, Arabic, Hebrew, Greek and Cyrillic) but
no CJK, which would draw as empty boxes. The CJK glyphs come from a package: ``noto-cjk-sans-otc`` (Google's Noto
Sans CJK collection, SIL Open Font License), a dependency of discolib. When it is missing, labels still draw,
without warnings, with the CJK characters as boxes.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

__all__ = [
    "CJK_FONT_FAMILY",
    "CJK_FONT_PACKAGE",
    "cjk_font_file",
    "draw_label",
    "label_font_families",
    "latin_font_file",
    "pil_font",
    "text_width",
]

#: The PyPI package whose font gives labels their CJK glyphs.
CJK_FONT_PACKAGE = "noto-cjk-sans-otc"
#: The face of the collection used (simplified Chinese forms; it covers kana, hangul and Latin too).
CJK_FONT_FAMILY = "Noto Sans CJK SC"
# Faces in NotoSansCJK-Regular.ttc: 0 JP, 1 KR, 2 SC, 3 TC, 4 HK (then the Mono ones).
_CJK_FACE_INDEX = 2


@functools.lru_cache(maxsize=1)
def cjk_font_file() -> Path | None:
    """The packaged Noto Sans CJK collection (``.ttc``), or None when ``noto-cjk-sans-otc`` is not installed."""
    # find_spec first: a missing optional font is the normal fallback path, not an ImportError to report.
    if importlib.util.find_spec("noto_cjk_sans_otc") is None:
        return None
    import noto_cjk_sans_otc

    path = Path(str(noto_cjk_sans_otc.FONT_PATH))
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def latin_font_file() -> Path | None:
    """DejaVu Sans, as matplotlib ships it (Latin, Greek, Cyrillic, Arabic, Hebrew), or None without matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def label_font_families() -> tuple[str, ...]:
    """matplotlib font families for labels, in fallback order: DejaVu Sans, then the CJK face when installed.

    Registers the CJK collection with matplotlib's font manager on first call (matplotlib picks per glyph along
    the list, so mixed Latin/Arabic/CJK text draws in one label). Needs matplotlib, which the caller has imported.
    """
    from matplotlib import font_manager

    path = cjk_font_file()
    if path is None:
        return ("DejaVu Sans",)
    font_manager.fontManager.addfont(str(path))
    return ("DejaVu Sans", CJK_FONT_FAMILY)


@functools.lru_cache(maxsize=16)
def _pil_fonts(size: int) -> tuple[Any, ...]:
    """The PIL fonts of labels at ``size`` px, in fallback order: Noto Sans CJK, DejaVu Sans, Pillow's default."""
    from PIL import ImageFont

    fonts: list[Any] = []
    layout = ImageFont.Layout.RAQM if _has_raqm() else ImageFont.Layout.BASIC
    cjk = cjk_font_file()
    if cjk is not None:
        fonts.append(ImageFont.truetype(str(cjk), size, index=_CJK_FACE_INDEX, layout_engine=layout))
    latin = latin_font_file()
    if latin is not None:
        fonts.append(ImageFont.truetype(str(latin), size, layout_engine=layout))
    fonts.append(ImageFont.load_default(size))
    return tuple(fonts)


@functools.lru_cache(maxsize=1)
def _has_raqm() -> bool:
    """Whether Pillow has its complex layout engine (Arabic joining and right-to-left order)."""
    from PIL import features

    return bool(features.check("raqm"))


@functools.lru_cache(maxsize=4096)
def _font_index_for(char: str, size: int) -> int:
    """The first label font at ``size`` that has a glyph for ``char`` (the last one when none has).

    Pillow cannot ask a font whether it has a glyph; a missing one is drawn as the font's ``.notdef`` box, so a
    character whose mask equals that of a surely unassigned code point (U+10FFFF) is missing from the font.
    """
    fonts = _pil_fonts(size)
    if char.isspace():
        return 0
    for i, font in enumerate(fonts[:-1]):
        mask = font.getmask(char)
        notdef = font.getmask("\U0010ffff")
        if mask.size != notdef.size or bytes(mask) != bytes(notdef):  # an ImagingCore's bytes are its pixels
            return i
    return len(fonts) - 1


def _runs(text: str, size: int) -> list[tuple[str, Any]]:
    """``text`` cut into runs that one font draws, each with that font (spaces join the run before them)."""
    fonts = _pil_fonts(size)
    runs: list[tuple[str, Any]] = []
    current: list[str] = []
    index = -1
    for char in text:
        i = index if char.isspace() and index >= 0 else _font_index_for(char, size)
        if i != index and current:
            runs.append(("".join(current), fonts[index]))
            current = []
        index = i
        current.append(char)
    if current:
        runs.append(("".join(current), fonts[index]))
    return runs


def text_width(text: str, size: int) -> int:
    """The width in pixels of ``text`` drawn by :func:`draw_label` at ``size`` px."""
    return int(sum(font.getlength(run) for run, font in _runs(text, size)))


def draw_label(
    draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, *, size: int = 14, fill: Any = (255, 255, 255),
    max_width: int | None = None,
) -> None:
    """Draw one line of ``text`` at ``xy`` (its top-left), each character in the first label font that has it.

    Latin and CJK come from Noto Sans CJK, Arabic and Hebrew from DejaVu Sans (joined and right-to-left where
    Pillow has its complex layout engine). ``max_width`` cuts the text, with an ellipsis, to fit that many pixels.
    Line breaks and other control characters are drawn as spaces.
    """
    text = "".join(" " if (c < " " or c == "\x7f") else c for c in text)
    if max_width is not None and text_width(text, size) > max_width:
        # No glyph of these fonts is narrower than a fifth of the size: longer text cannot fit, so a long prompt
        # does not cost one measurement per character it has.
        text = text[: max(1, 5 * max_width // max(size, 1))]
        while text and text_width(text + "…", size) > max_width:
            text = text[:-1]
        text += "…"
    x, y = xy
    for run, font in _runs(text, size):
        draw.text((x, y), run, font=font, fill=fill)
        x += int(font.getlength(run))


def pil_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first label font at ``size`` (Noto Sans CJK when installed), for callers drawing single-script text."""
    return _pil_fonts(size)[0]
