"""One photo and its depth map as 3D files: a textured triangle mesh (GLB) and a coloured point cloud (PLY).

The camera is the rigid pinhole of :mod:`discolib.animation.motion` (``camera="pinhole"``): square pixels, principal
point at the image centre ``((W - 1) / 2, (H - 1) / 2)``, *vertical* field of view ``fov_deg``, so the focal length
is ``f = (H / 2) / tan(fov / 2)`` pixels, and depth is the distance along the optical axis (``z``, not the length
of the ray), in whatever units the depth map has.

The files use glTF's axes (what every viewer expects): ``x`` right, ``y`` up, the camera at the origin looking
down ``-z``. A pixel ``(u, v)`` (``u`` right, ``v`` down, centres at integers) of depth ``d`` becomes the point
``(d (u - c_x) / f, -d (v - c_y) / f, -d)``, so the camera of the photo, placed at the origin in a viewer, sees the
photo exactly as it was taken.

The mesh has one vertex per pixel (fewer when the photo has more than ``max_vertices`` pixels: an evenly spaced
sub-grid, see :func:`export_glb`) and two triangles per quad of neighbouring pixels; triangles that span a depth
discontinuity (relative jump above ``edge_cut``) are dropped, so a foreground object is not joined to the
background by long stretched "skins". The photo itself is the texture (UVs at the pixel centres), embedded in the
GLB as PNG, so the full resolution survives even when the geometry is sub-sampled.

Everything is vectorised numpy and both files are written here directly (no 3D library at run time; the tests
read them back with trimesh). ``benchmarks/mesh.py`` measures the time for a 1-megapixel photo.
"""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from discolib.errors import InputError
from discolib.io.files import WriteError, atomic_path

__all__ = ["MeshError", "export_glb", "export_ply", "grid_size", "mesh_faces", "unproject"]


class MeshError(InputError):
    """A photo or depth map that cannot become a mesh (wrong shape, non-positive or non-finite depth, bad fov)."""


def _check_fov(fov_deg: float) -> float:
    fov = float(fov_deg)
    if not (math.isfinite(fov) and 0.0 < fov < 180.0):
        raise MeshError(f"fov_deg must be in (0, 180) degrees (the vertical field of view), got {fov_deg!r}")
    return fov


def _as_numpy(array: Any) -> np.ndarray:
    """A numpy array from numpy or a (CPU or GPU) torch tensor, without importing torch."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _check_depth(depth: np.ndarray) -> np.ndarray:
    d = _as_numpy(depth)
    while d.ndim > 2 and d.shape[0] == 1:  # (1, 1, H, W) / (1, H, W) as the animation keeps it
        d = d[0]
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2:
        raise MeshError(f"depth must be an (H, W) array with H, W >= 2, got shape {d.shape}")
    d = d.astype(np.float32, copy=False)
    if not np.isfinite(d).all() or not (d > 0).all():
        raise MeshError("depth must be finite and positive everywhere (larger = farther)")
    return d


def _check_photo(photo: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``photo`` as ``(H, W, 3)`` uint8 (float input in ``[0, 1]`` is scaled), the same size as the depth map.

    Also takes the animation's ``(1, 3, H, W)`` / ``(3, H, W)`` float tensors in ``[0, 1]``.
    """
    p = _as_numpy(photo)
    if p.ndim == 4 and p.shape[0] == 1:  # (1, 3, H, W) as the animation keeps it
        p = p[0]
    if p.ndim == 3 and p.shape[0] in (3, 4) and p.shape[2] not in (3, 4):
        p = p.transpose(1, 2, 0)  # channels first -> last
    if p.ndim != 3 or p.shape[2] not in (3, 4):
        raise MeshError(f"photo must be an (H, W, 3) RGB array, got shape {p.shape}")
    p = p[..., :3]
    if p.dtype != np.uint8:
        p = (np.clip(p.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if p.shape[:2] != shape:
        raise MeshError(f"photo is {p.shape[1]}x{p.shape[0]} but depth is {shape[1]}x{shape[0]}: they must match")
    return np.ascontiguousarray(p)


def _focal(height: int, fov_deg: float) -> float:
    return (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def _axes(us: np.ndarray, vs: np.ndarray, height: int, width: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``x / z`` of columns ``us`` and ``y / z`` of rows ``vs`` (y up: rows go down)."""
    f = _focal(height, fov_deg)
    x = (us.astype(np.float32) - np.float32((width - 1) / 2.0)) / np.float32(f)
    y = (np.float32((height - 1) / 2.0) - vs.astype(np.float32)) / np.float32(f)
    return x, y


def _points(depth: np.ndarray, us: np.ndarray, vs: np.ndarray, height: int, width: int, fov_deg: float) -> np.ndarray:
    """Unproject the pixels at columns ``us`` x rows ``vs`` (of a ``height`` x ``width`` photo), ``depth`` sampled there."""
    x, y = _axes(us, vs, height, width, fov_deg)
    out = np.empty((*depth.shape, 3), dtype=np.float32)
    np.multiply(depth, x[None, :], out=out[..., 0])
    np.multiply(depth, y[:, None], out=out[..., 1])
    np.negative(depth, out=out[..., 2])
    return out


def unproject(depth: np.ndarray, fov_deg: float) -> np.ndarray:
    """Every pixel of ``depth`` ``(H, W)`` as a 3D point: ``(H, W, 3)`` float32 camera coordinates.

    glTF axes: ``x`` right, ``y`` up, ``z = -depth`` (the camera looks down ``-z``); pinhole of vertical field of
    view ``fov_deg``, principal point at the centre, square pixels (module docstring).
    """
    d = _check_depth(depth)
    fov = _check_fov(fov_deg)
    h, w = d.shape
    return _points(d, np.arange(w), np.arange(h), h, w, fov)


def grid_size(height: int, width: int, max_vertices: int) -> tuple[int, int]:
    """The mesh's vertex grid ``(rows, cols)`` for a ``height`` x ``width`` photo: the photo's own size when it has
    at most ``max_vertices`` pixels, else the largest grid of the same aspect ratio within ``max_vertices``."""
    if max_vertices < 4:
        raise MeshError(f"max_vertices must be at least 4, got {max_vertices}")
    if height * width <= max_vertices:
        return height, width
    scale = math.sqrt(max_vertices / (height * width))
    rows, cols = max(2, int(height * scale)), max(2, int(width * scale))
    while rows * cols > max_vertices:  # rounding can overshoot by a row or column
        if rows >= cols:
            rows -= 1
        else:
            cols -= 1
    return rows, cols


def mesh_faces(depth: np.ndarray, edge_cut: float | None) -> np.ndarray:
    """Triangles ``(F, 3)`` int32 over the vertex grid of ``depth`` ``(h, w)`` (vertex ``i * w + j``).

    Two per quad, counter-clockwise seen from the camera (glTF's front faces): first the upper-left triangle of
    every quad, then the lower-right one, each in row-major quad order. With ``edge_cut``, a triangle whose farthest
    corner is more than ``1 + edge_cut`` times as far as its nearest is dropped (a depth discontinuity).
    """
    h, w = depth.shape
    # Top-left corner a of every quad; b = a + 1 (right), c = a + w (below), e = a + w + 1.
    # (a, c, b) and (b, c, e) run counter-clockwise in the image with y up (rows go down).
    corner = (np.arange(h - 1, dtype=np.int32)[:, None] * w + np.arange(w - 1, dtype=np.int32)[None, :]).reshape(-1)
    upper = np.array([0, w, 1], dtype=np.int32)
    lower = np.array([1, w, w + 1], dtype=np.int32)
    if edge_cut is None:
        first, second = corner, corner
    else:
        if not (math.isfinite(edge_cut) and edge_cut > 0):
            raise MeshError(f"edge_cut must be a positive number or None, got {edge_cut!r}")
        # A triangle's largest-to-smallest depth ratio is the ratio across one of its edges, so a triangle is kept
        # when all three edges are: |log d1 - log d2| <= log(1 + edge_cut). Per edge, so each test runs once.
        log_d = np.log(depth)
        limit = np.float32(math.log1p(float(edge_cut)))
        horizontal = np.abs(log_d[:, 1:] - log_d[:, :-1]) <= limit  # (h, w - 1)
        vertical = np.abs(log_d[1:] - log_d[:-1]) <= limit  # (h - 1, w)
        diagonal = np.abs(log_d[:-1, 1:] - log_d[1:, :-1]) <= limit  # b-c, shared by both triangles of a quad
        keep_upper = horizontal[:-1] & vertical[:, :-1] & diagonal  # a-b, a-c, b-c
        keep_lower = horizontal[1:] & vertical[:, 1:] & diagonal  # c-e, b-e, b-c
        # np.compress, not boolean indexing: ~4x faster on a large 1-D selection.
        first = np.compress(keep_upper.reshape(-1), corner)
        second = np.compress(keep_lower.reshape(-1), corner)
    faces = np.empty((first.size + second.size, 3), dtype=np.int32)
    np.add(first[:, None], upper, out=faces[: first.size])
    np.add(second[:, None], lower, out=faces[first.size :])
    return faces


def _sample_positions(size: int, count: int) -> np.ndarray:
    """``count`` evenly spaced pixel indices over ``[0, size - 1]``, both ends included."""
    if count == size:
        return np.arange(size)
    return np.rint(np.linspace(0.0, size - 1.0, count)).astype(np.int64)


def export_glb(
    photo: np.ndarray,
    depth: np.ndarray,
    path: str | Path,
    *,
    fov_deg: float,
    max_vertices: int = 1_500_000,
    edge_cut: float | None = 0.04,
) -> Path:
    """Write the photo as a textured triangle mesh (binary glTF) at ``path``, atomically; returns ``path``.

    Args:
        photo: ``(H, W, 3)`` uint8 RGB (or float in ``[0, 1]``; a ``(1, 3, H, W)`` tensor too), the texture.
        depth: ``(H, W)`` positive depth (larger = farther) in the units of the pinhole camera (module docstring);
            ``(1, 1, H, W)`` too.
        fov_deg: the camera's vertical field of view in degrees, in ``(0, 180)``.
        max_vertices: above this many pixels the geometry is an evenly spaced sub-grid (:func:`grid_size`;
            nearest samples of the depth, so no vertex is averaged across an edge); the texture stays full size.
        edge_cut: drop triangles across a relative depth jump above this (0.04: 4 %); None keeps all.

    The mesh has exactly ``rows * cols`` vertices (``grid_size(H, W, max_vertices)``, ``H * W`` for a photo
    within the limit), in row-major pixel order, each with the UV of its pixel centre; vertices whose triangles
    were all cut stay in the file (unreferenced), so vertex ``i * cols + j`` is always grid point ``(i, j)``.
    """
    d = _check_depth(depth)
    fov = _check_fov(fov_deg)
    h, w = d.shape
    rgb = _check_photo(photo, (h, w))
    rows, cols = grid_size(h, w, int(max_vertices))
    vs, us = _sample_positions(h, rows), _sample_positions(w, cols)
    dg = d if (rows, cols) == (h, w) else d[np.ix_(vs, us)]
    vertices = _points(dg, us, vs, h, w, fov).reshape(-1, 3)
    bounds = _bounds(dg, us, vs, h, w, fov)
    faces = mesh_faces(dg, edge_cut)
    uv = np.empty((rows, cols, 2), dtype=np.float32)
    uv[..., 0] = ((us + 0.5) / w).astype(np.float32)[None, :]
    uv[..., 1] = ((vs + 0.5) / h).astype(np.float32)[:, None]  # glTF's UV origin is the image's top-left
    return _write_parts(path, _glb_parts(vertices, bounds, faces, uv.reshape(-1, 2), _png(rgb)))


def _bounds(depth: np.ndarray, us: np.ndarray, vs: np.ndarray, height: int, width: int, fov_deg: float) -> np.ndarray:
    """``[[min x, min y, min z], [max x, max y, max z]]`` of :func:`_points` from per-row/column depth extremes.

    (Reducing the interleaved ``(N, 3)`` vertex array costs ~40 ms per pass at 1 MP; these are four cheap passes.)
    """
    x, y = _axes(us, vs, height, width, fov_deg)
    col_lo, col_hi = depth.min(axis=0), depth.max(axis=0)
    row_lo, row_hi = depth.min(axis=1), depth.max(axis=1)
    # x d is monotonic in d: the extremes sit at d's extremes. The same float32 products as the vertices, so the
    # accessor's min / max are exactly theirs (glTF validators check).
    x_ends = np.concatenate((x * col_lo, x * col_hi))
    y_ends = np.concatenate((y * row_lo, y * row_hi))
    lo = [x_ends.min(), y_ends.min(), -col_hi.max()]
    hi = [x_ends.max(), y_ends.max(), -col_lo.min()]
    return np.array([lo, hi], dtype=np.float32)


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # Lossless; level 1 is ~4x faster than Pillow's default 6 for ~10 % more bytes (the 1 s budget at 1 MP).
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _glb_parts(
    vertices: np.ndarray, bounds: np.ndarray, faces: np.ndarray, uv: np.ndarray, png: bytes
) -> list[bytes | memoryview]:
    """A binary glTF 2.0 file as the byte strings to write in order: one mesh, one unlit material, the PNG texture.

    Written directly (the container is a JSON chunk and a binary chunk, the arrays go out as they are, no copy):
    trimesh's exporter took 1.3 s at 1 MP here (bounds, dtype conversions, PNG at level 6), over the budget. The
    tests read the result back with trimesh.
    """
    blobs: list[bytes | memoryview] = []
    views: list[dict[str, Any]] = []
    offset = 0

    def add_view(data: bytes | memoryview, target: int | None = None) -> int:
        nonlocal offset
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": offset, "byteLength": size}
        if target is not None:
            view["target"] = target
        blobs.append(data)
        pad = (-size) % 4  # every view starts 4-byte aligned
        if pad:
            blobs.append(b"\0" * pad)
        views.append(view)
        offset += size + pad
        return len(views) - 1

    def raw(array: np.ndarray, dtype: str) -> memoryview:
        return memoryview(np.ascontiguousarray(array, dtype=dtype)).cast("B")

    accessors: list[dict[str, Any]] = [
        {
            "bufferView": add_view(raw(vertices, "<f4"), 34962),  # ARRAY_BUFFER
            "componentType": 5126,  # FLOAT
            "count": int(vertices.shape[0]),
            "type": "VEC3",
            "min": bounds[0].tolist(),  # required for POSITION
            "max": bounds[1].tolist(),
        },
        {"bufferView": add_view(raw(uv, "<f4"), 34962), "componentType": 5126, "count": int(uv.shape[0]), "type": "VEC2"},
    ]
    primitive: dict[str, Any] = {"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0, "mode": 4}
    if len(faces):
        index_view = add_view(raw(faces, "<u4"), 34963)  # ELEMENT_ARRAY_BUFFER
        accessors.append({"bufferView": index_view, "componentType": 5125, "count": int(faces.size), "type": "SCALAR"})
        primitive["indices"] = 2
    else:  # every triangle cut (pure noise depth): an index accessor may not be empty, so the vertices as points
        primitive["mode"] = 0
    image_view = add_view(png)
    gltf = {
        "asset": {"version": "2.0", "generator": "discolib"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "photo"}],
        "meshes": [{"name": "photo", "primitives": [primitive]}],
        # Unlit: the photo already holds its lighting; viewers without the extension fall back to this PBR one.
        "materials": [
            {
                "name": "photo",
                "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0},
                "doubleSided": True,
                "extensions": {"KHR_materials_unlit": {}},
            }
        ],
        "textures": [{"source": 0, "sampler": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9729, "wrapS": 33071, "wrapT": 33071}],  # linear, clamp
        "images": [{"bufferView": image_view, "mimeType": "image/png"}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 4)  # the JSON chunk is padded with spaces
    head = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + 8 + offset)
    head += struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", offset, b"BIN\0")
    return [head, *blobs]


def _write_parts(path: str | Path, parts: list[bytes | memoryview]) -> Path:
    """Write ``parts`` one after the other to ``path`` atomically (as ``files.write_bytes_atomic``, unjoined)."""
    path = Path(path)

    def cannot_write(exc: OSError) -> WriteError:
        return WriteError(path, exc)

    with atomic_path(path, mkdir=True, error=cannot_write) as tmp:
        try:
            with open(tmp, "wb") as fh:
                for part in parts:
                    fh.write(part)
        except OSError as exc:
            raise WriteError(path, exc) from None
    return path


def export_ply(photo: np.ndarray, depth: np.ndarray, path: str | Path, *, fov_deg: float) -> Path:
    """Write the photo as a coloured point cloud (binary little-endian PLY) at ``path``, atomically; returns it.

    One point per pixel, row-major, properties ``x y z`` (float32, the axes of :func:`unproject`) and
    ``red green blue`` (uchar).
    """
    d = _check_depth(depth)
    rgb = _check_photo(photo, d.shape)
    points = unproject(d, fov_deg).reshape(-1, 3)
    n = points.shape[0]
    record = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    data = np.empty(n, dtype=record)
    data["x"], data["y"], data["z"] = points[:, 0], points[:, 1], points[:, 2]
    colours = rgb.reshape(-1, 3)
    data["red"], data["green"], data["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment discolib photo point cloud\n"
        f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    return _write_parts(path, [header.encode("ascii"), memoryview(data).cast("B")])
