"""2D Perlin noise: Disco's ``perlin_init`` start images (:func:`perlin_noise`) and Deforum's ``noise_type: perlin`` (:func:`lattice_perlin`)."""

from __future__ import annotations

import math

import torch

from discolib.errors import InputError

__all__ = ["NoiseError", "lattice_perlin", "perlin_noise"]


class NoiseError(InputError):
    """Perlin noise parameters out of range."""


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade curve ``6t^5 - 15t^4 + 10t^3``."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _perlin_octave(
    n: int, height: int, width: int, cells: tuple[float, float], generator: torch.Generator | None,
    device: torch.device, dtype: torch.dtype,
) -> torch.Tensor:
    """``n`` independent 2D gradient-noise fields ``(n, H, W)`` in ``[-1, 1]`` with ``cells`` (y, x) periods."""
    cy, cx = cells
    gy, gx = math.ceil(cy) + 1, math.ceil(cx) + 1
    angles = torch.rand(n, gy, gx, generator=generator, device=device, dtype=dtype) * (2 * math.pi)
    grads = torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)  # (n, gy, gx, 2) unit gradients
    py = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (cy / height)
    px = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (cx / width)
    iy, ix = py.floor().long(), px.floor().long()
    fy, fx = (py - iy.to(dtype)).view(height, 1), (px - ix.to(dtype)).view(1, width)
    iy, ix = iy.view(height, 1), ix.view(1, width)

    def corner(dy: int, dx: int) -> torch.Tensor:
        g = grads[:, iy + dy, ix + dx]  # (n, H, W, 2)
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    top = torch.lerp(corner(0, 0), corner(0, 1), u)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), u)
    # With unit gradients 2D Perlin noise lies in [-sqrt(1/2), sqrt(1/2)]; scale to [-1, 1].
    return torch.lerp(top, bottom, v) * math.sqrt(2.0)


def _zero_fields(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.device]:
    """The zero accumulator ``(N, H, W)`` of noise of ``shape`` ``(..., H, W)`` (N the leading dims' product) and
    its device: ``device``, else the generator's, else the CPU."""
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    *lead, height, width = shape
    return torch.zeros(math.prod(lead), height, width, device=device, dtype=dtype), device


def perlin_noise(
    shape: tuple[int, ...],
    cells: tuple[float, float] = (8.0, 8.0),
    octaves: int = 4,
    persistence: float = 0.5,
    lacunarity: float = 2.0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fractal 2D Perlin (gradient) noise, independent per leading index, values in ``[-1, 1]``.

    Args:
        shape: ``(..., H, W)``, e.g. ``(B, 1, H, W)``.
        cells: lattice periods across ``(height, width)`` of the first octave (Deforum's ``perlin_h/w``).
        octaves: number of octaves; octave ``k`` has ``cells * lacunarity**k`` periods and amplitude
            ``persistence**k``; the sum is divided by the total amplitude, so it stays in ``[-1, 1]``.
        generator: seeds the lattice gradients (same generator state -> same noise). It must live on
            ``device`` (default: the generator's device, else CPU).

    Returns:
        Tensor of ``shape`` on ``device``.
    """
    if len(shape) < 2:
        raise NoiseError(f"perlin_noise shape must end with (H, W), got {shape}")
    if octaves < 1 or not persistence > 0 or not lacunarity > 0 or min(cells) <= 0:
        raise NoiseError(
            "perlin noise needs octaves >= 1 and positive cells, persistence and lacunarity; "
            f"got cells={cells}, octaves={octaves}, persistence={persistence}, lacunarity={lacunarity}"
        )
    total, device = _zero_fields(shape, generator, device, dtype)
    n, height, width = total.shape
    amplitude, scale, weight = 1.0, 1.0, 0.0
    for _ in range(octaves):
        cells_k = (cells[0] * scale, cells[1] * scale)
        total += amplitude * _perlin_octave(n, height, width, cells_k, generator, device, dtype)
        weight += amplitude
        amplitude *= persistence
        scale *= lacunarity
    return (total / weight).clamp(-1.0, 1.0).reshape(shape)




def lattice_perlin(
    shape: tuple[int, ...],
    cells: tuple[int, int] = (8, 8),
    octaves: int = 4,
    persistence: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """sd-webui-deforum's Perlin pattern (its ``noise_type: perlin``), independent per leading index.

    Octave ``k`` has ``cells * 2**k`` lattice cells across ``(H, W)`` and amplitude ``persistence**k``; unlike
    :func:`perlin_noise` the octaves are summed without normalising (as webui does: with 4 octaves the sum can
    reach +-1.875) and pixel ``i`` sits at lattice coordinate ``i * cells / size`` (the lattice's corner, not the
    pixel's centre). Each octave draws its ``(cells + 1)`` gradient angles from ``generator`` in turn, so with
    the same generator state a single field equals webui's for sizes that are multiples of the cells (webui
    refuses other sizes; this works for any).

    Args:
        shape: ``(..., H, W)``.
        cells: lattice cells across ``(H, W)`` of the first octave, positive integers.
        octaves: number of octaves (>= 1).
        persistence: amplitude factor between octaves.
        generator: seeds the gradient angles; noise is drawn on its device (default: CPU).

    Returns:
        Tensor of ``shape`` on ``device``.
    """
    if len(shape) < 2:
        raise NoiseError(f"lattice_perlin shape must end with (H, W), got {shape}")
    if octaves < 1 or min(cells) < 1 or not persistence >= 0:
        raise NoiseError(
            f"perlin noise needs octaves >= 1, cells >= 1 and persistence >= 0; got cells={cells}, octaves={octaves}, "
            f"persistence={persistence}"
        )
    total, device = _zero_fields(shape, generator, device, dtype)
    n, height, width = total.shape
    for k in range(int(octaves)):
        cy, cx = cells[0] * 2**k, cells[1] * 2**k
        angles = torch.rand(n, cy + 1, cx + 1, generator=generator, device=device, dtype=dtype) * (2 * math.pi)
        grads = torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)  # (n, cy + 1, cx + 1, 2)
        # Pixel i sits at lattice coordinate i * cells / size: cell and fraction in integers, so a pixel on a
        # lattice line is exactly on it (a float product can land just below it and pick the previous cell).
        ry = torch.arange(height, device=device) * cy
        rx = torch.arange(width, device=device) * cx
        iy, ix = (ry // height).view(height, 1), (rx // width).view(1, width)
        fy = ((ry % height).to(torch.float64) / height).to(dtype).view(height, 1)
        fx = ((rx % width).to(torch.float64) / width).to(dtype).view(1, width)

        def corner(dy: int, dx: int, g: torch.Tensor = grads, iy: torch.Tensor = iy, ix: torch.Tensor = ix,
                   fy: torch.Tensor = fy, fx: torch.Tensor = fx) -> torch.Tensor:
            v = g[:, iy + dy, ix + dx]  # (n, H, W, 2): gradient at the corner (dy, dx) of each pixel's cell
            return v[..., 0] * (fy - dy) + v[..., 1] * (fx - dx)  # gradient . offset (first axis = rows)

        ty, tx = _fade(fy), _fade(fx)
        along_y0 = torch.lerp(corner(0, 0), corner(1, 0), ty)
        along_y1 = torch.lerp(corner(0, 1), corner(1, 1), ty)
        total += (persistence**k) * math.sqrt(2.0) * torch.lerp(along_y0, along_y1, tx)
    return total.reshape(shape)
