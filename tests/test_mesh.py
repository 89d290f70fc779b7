"""GLB and PLY export of a photo with its depth: read back with trimesh (an independent reader), geometry re-derived.

The pinhole is re-derived here: vertical fov, f = (H / 2) / tan(fov / 2) pixels, principal point ((W-1)/2, (H-1)/2),
glTF axes (x right, y up, camera looking down -z, z = -depth).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from discolib.io.mesh import MeshError, export_glb, export_ply, grid_size, unproject

trimesh = pytest.importorskip("trimesh")


def _expected_points(depth: np.ndarray, fov_deg: float, rows: np.ndarray | None = None, cols: np.ndarray | None = None):
    h, w = depth.shape
    rows = np.arange(h) if rows is None else rows
    cols = np.arange(w) if cols is None else cols
    f = (h / 2) / math.tan(math.radians(fov_deg) / 2)
    d = depth[np.ix_(rows, cols)].astype(np.float64)
    u, v = np.meshgrid(cols.astype(np.float64), rows.astype(np.float64))
    return np.stack(((u - (w - 1) / 2) / f * d, -(v - (h - 1) / 2) / f * d, -d), axis=-1)


def _scene(h: int = 24, w: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # A smooth slanted surface from 2 to 3: neighbouring pixels differ by far less than 4 %.
    depth = (2.0 + np.linspace(0, 1, w)[None, :] * 0.6 + np.linspace(0, 1, h)[:, None] * 0.4).astype(np.float32)
    return photo, depth


def _load_mesh(path: Path):
    mesh = trimesh.load(path, process=False, force="mesh")
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def test_unproject_convention() -> None:
    depth = np.full((4, 6), 5.0, dtype=np.float32)
    pts = unproject(depth, 90.0)  # f = H / 2 = 2
    assert pts.shape == (4, 6, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts, _expected_points(depth, 90.0), rtol=1e-6)
    assert pts[0, -1, 0] > 0 and pts[0, -1, 1] > 0  # top-right pixel: right and up
    np.testing.assert_allclose(pts[..., 2], -5.0)


def test_glb_loads_back_with_the_photo_geometry(tmp_path: Path) -> None:
    photo, depth = _scene()
    h, w = depth.shape
    fov = 60.0
    out = export_glb(photo, depth, tmp_path / "photo.glb", fov_deg=fov)
    assert out == tmp_path / "photo.glb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.glb"]  # no temporary left beside it
    mesh = _load_mesh(out)
    assert len(mesh.vertices) == h * w
    expected = _expected_points(depth, fov)
    np.testing.assert_allclose(mesh.vertices, expected.reshape(-1, 3), rtol=1e-5, atol=1e-6)
    # Bounds: z spans the depth range; x / y extents from the fov at the corner pixels.
    lo, hi = mesh.bounds
    assert lo[2] == pytest.approx(-depth.max(), rel=1e-6) and hi[2] == pytest.approx(-depth.min(), rel=1e-6)
    f = (h / 2) / math.tan(math.radians(fov) / 2)
    assert hi[0] == pytest.approx(((w - 1) / 2) / f * depth[:, -1].max(), rel=1e-5)
    assert lo[0] == pytest.approx(-((w - 1) / 2) / f * depth[:, 0].max(), rel=1e-5)
    assert hi[1] == pytest.approx(((h - 1) / 2) / f * depth[0].max(), rel=1e-5)
    # Nothing cut on a smooth surface: two triangles per quad, all facing the camera at the origin.
    assert len(mesh.faces) == 2 * (h - 1) * (w - 1)
    centres = mesh.triangles_center
    assert (np.einsum("ij,ij->i", mesh.face_normals, -centres) > 0).all()
    # The texture is the photo, exactly (PNG), and every vertex's UV is its pixel centre (trimesh flips V).
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(texture, photo)
    u, v = np.meshgrid((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h)
    np.testing.assert_allclose(mesh.visual.uv, np.stack((u, 1 - v), -1).reshape(-1, 2), atol=1e-6)


def test_triangles_across_a_depth_step_are_cut(tmp_path: Path) -> None:
    photo, _ = _scene(20, 30)
    h, w = 20, 30
    depth = np.full((h, w), 1.0, dtype=np.float32)
    depth[:, 15:] = 3.0  # a wall 1 in front of a background 3: one column of quads spans the step
    mesh = _load_mesh(export_glb(photo, depth, tmp_path / "step.glb", fov_deg=50.0))
    assert len(mesh.vertices) == h * w  # vertices stay (grid order), only faces go
    assert len(mesh.faces) == 2 * (h - 1) * (w - 1) - 2 * (h - 1)
    z = mesh.vertices[:, 2][mesh.faces]  # (F, 3) corner depths
    assert np.all(z.max(axis=1) == z.min(axis=1))  # no face joins the wall to the background
    # With edge_cut=None the skin is kept; the 3x step (a 200 % jump) survives edge_cut=2.5 but not 1.5.
    assert len(_load_mesh(export_glb(photo, depth, tmp_path / "all.glb", fov_deg=50.0, edge_cut=None)).faces) == (
        2 * (h - 1) * (w - 1)
    )
    assert len(_load_mesh(export_glb(photo, depth, tmp_path / "wide.glb", fov_deg=50.0, edge_cut=2.5)).faces) == (
        2 * (h - 1) * (w - 1)
    )
    assert len(_load_mesh(export_glb(photo, depth, tmp_path / "tight.glb", fov_deg=50.0, edge_cut=1.5)).faces) == (
        2 * (h - 1) * (w - 1) - 2 * (h - 1)
    )


def test_large_photo_gets_a_sub_grid_within_max_vertices(tmp_path: Path) -> None:
    photo, depth = _scene(40, 60)
    rows, cols = grid_size(40, 60, 600)
    assert rows * cols <= 600 and rows >= 19 and cols >= 29
    assert abs(cols / rows - 60 / 40) < 0.1
    mesh = _load_mesh(export_glb(photo, depth, tmp_path / "sub.glb", fov_deg=45.0, max_vertices=600))
    assert len(mesh.vertices) == rows * cols
    assert len(mesh.faces) == 2 * (rows - 1) * (cols - 1)
    # The sub-grid keeps the corner pixels: same bounds as the full-resolution unprojection.
    full = _expected_points(depth, 45.0).reshape(-1, 3)
    np.testing.assert_allclose(mesh.bounds, [full.min(0), full.max(0)], rtol=1e-5)
    # The texture is still the full photo.
    assert mesh.visual.material.baseColorTexture.size == (60, 40)


def test_ply_point_cloud(tmp_path: Path) -> None:
    photo, depth = _scene(12, 20, seed=3)
    out = export_ply(photo, depth, tmp_path / "cloud.ply", fov_deg=70.0)
    cloud = trimesh.load(out, process=False)
    assert isinstance(cloud, trimesh.PointCloud)
    assert len(cloud.vertices) == 12 * 20
    np.testing.assert_allclose(cloud.vertices, _expected_points(depth, 70.0).reshape(-1, 3), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], photo.reshape(-1, 3))
    assert out.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_float_photo_is_accepted(tmp_path: Path) -> None:
    photo, depth = _scene(8, 8)
    out = export_ply(photo.astype(np.float32) / 255.0, depth, tmp_path / "f.ply", fov_deg=40.0)
    colours = np.asarray(trimesh.load(out, process=False).colors)[:, :3]
    np.testing.assert_array_equal(colours, photo.reshape(-1, 3))


def test_animation_tensors_are_accepted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    photo, depth = _scene(10, 14)
    as_tensor = torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0).float() / 255.0  # (1, 3, H, W) in [0, 1]
    out = export_ply(as_tensor, torch.from_numpy(depth)[None, None], tmp_path / "t.ply", fov_deg=40.0)
    cloud = trimesh.load(out, process=False)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], photo.reshape(-1, 3))
    np.testing.assert_allclose(cloud.vertices, _expected_points(depth, 40.0).reshape(-1, 3), rtol=1e-5, atol=1e-6)


def test_one_megapixel_export(tmp_path: Path) -> None:
    # Works at 1 MP (the time is measured by benchmarks/mesh.py, not here).
    rng = np.random.default_rng(5)
    h, w = 768, 1344
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    depth = (3.0 + np.sin(xx / 90.0) + np.cos(yy / 70.0)).astype(np.float32)
    depth[300:500, 400:700] = 1.0  # a foreground box
    glb = export_glb(photo, depth, tmp_path / "big.glb", fov_deg=55.0)
    ply = export_ply(photo, depth, tmp_path / "big.ply", fov_deg=55.0)
    mesh = _load_mesh(glb)
    assert len(mesh.vertices) == h * w
    assert 0 < len(mesh.faces) < 2 * (h - 1) * (w - 1)  # the box's outline is cut
    assert mesh.bounds[0][2] == pytest.approx(-depth.max(), rel=1e-6)
    assert len(trimesh.load(ply, process=False).vertices) == h * w


@pytest.mark.parametrize(
    ("depth", "fov", "words"),
    [
        (np.full((8, 8), -1.0), 50.0, "positive"),
        (np.where(np.eye(8) > 0, np.nan, 1.0), 50.0, "finite"),
        (np.ones((8, 8)), 0.0, "fov_deg"),
        (np.ones((8, 8)), 180.0, "fov_deg"),
        (np.ones((8,)), 50.0, "(H, W)"),
        (np.ones((6, 8)), 50.0, "must match"),
    ],
)
def test_bad_inputs(tmp_path: Path, depth: np.ndarray, fov: float, words: str) -> None:
    photo = np.zeros((8, 8, 3), dtype=np.uint8)
    for export in (export_glb, export_ply):
        with pytest.raises(MeshError, match=words.replace("(", r"\(").replace(")", r"\)")):
            export(photo, depth, tmp_path / "x.out", fov_deg=fov)
    assert not list(tmp_path.iterdir())


def test_mesh_export_needs_no_3d_library() -> None:
    code = "import sys, discolib, discolib.io.mesh; assert 'trimesh' not in sys.modules, 'trimesh imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
