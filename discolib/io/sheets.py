"""Contact sheets: a grid of thumbnails, each with a one-line label (a prompt, a frame number) in any script."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from discolib.errors import DiscolibError
from discolib.io.fonts import draw_label

__all__ = ["contact_sheet"]


def contact_sheet(
    images: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    thumb: int = 256,
    label_size: int = 14,
    background: tuple[int, int, int] = (16, 16, 16),
) -> Any:
    """One RGB PIL image with ``images`` (PIL images) as thumbnails in a grid, each labelled below.

    Thumbnails keep their aspect ratio within ``thumb`` x ``thumb`` pixels; ``columns`` defaults to a near-square
    grid. Labels are drawn with :func:`discolib.io.fonts.draw_label` (CJK, Arabic and Latin glyphs; cut with an
    ellipsis to the thumbnail's width).

    Raises:
        DiscolibError: no images, or a different number of labels than images.
    """
    from PIL import Image, ImageDraw

    if not images:
        raise DiscolibError("a contact sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise DiscolibError(f"a contact sheet got {len(images)} image(s) but {len(labels)} label(s)")
    cols = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    pad = 4
    label_h = label_size + 2 * pad if labels is not None else 0
    cell_w, cell_h = thumb + 2 * pad, thumb + 2 * pad + label_h
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), background)
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        col, row = i % cols, i // cols
        small = image.convert("RGB")
        small.thumbnail((thumb, thumb))
        x0, y0 = col * cell_w + pad, row * cell_h + pad
        sheet.paste(small, (x0 + (thumb - small.width) // 2, y0 + (thumb - small.height) // 2))
        if labels is not None:
            draw_label(draw, (x0, y0 + thumb + pad), labels[i], size=label_size, max_width=thumb)
    return sheet
