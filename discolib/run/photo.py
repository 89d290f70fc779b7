"""``animate_photo``: one photo to a 3D-parallax video (``discolib animate``).

The steps: read the photo (:func:`discolib.io.images.load_photo`: EXIF orientation, odd modes, size checks), its
depth (:func:`photo_depth`: the depth model at the photo's resolution, edge-refined, cached per photo), the camera
path (a preset sized to the photo's depth range, or a ``path.json``), then per frame a warp of the ORIGINAL photo by
the cumulative pose and the fill of what the camera reveals (:mod:`discolib.animation.photo`), written through a
:class:`~discolib.run.runs.FrameWriter` into a run folder beside the video, then encoded. Optionally a stereo video
(side-by-side or anaglyph, the eyes a small baseline apart on the same path) and the photo as a 3D mesh / point
cloud (:mod:`discolib.io.mesh`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from discolib.animation.photo import (
    CAMERA_PRESETS,
    PHOTO_FOV_DEG,
    FillState,
    absolute_poses,
    background_layer,
    camera_preset,
    depth_range,
    fill_revealed,
    fov_values,
    frame_count,
    load_camera_path,
    refine_depth_edges,
    reveal_reach,
    warp_photo,
    world_depth,
)
from discolib.animation.stereo import anaglyph, side_by_side
from discolib.errors import InputError, WeightsUnavailable, one_line
from discolib.io.files import atomic_path
from discolib.io.images import MIN_PHOTO_SIDE, load_photo
from discolib.io.inputs import expand_path
from discolib.io.mesh import export_glb, export_ply
from discolib.io.video import frames_to_video
from discolib.models.depth import DEFAULT_DEPTH_MODEL, DepthEstimator, load_depth, save_depth_png
from discolib.models.hub import cache_root
from discolib.run.loop import cpu_threads
from discolib.run.runs import FrameWriter, PendingFrame, RunFolder, threads_for

if TYPE_CHECKING:  # the latent fill's types; its modules import diffusers, loaded only when the fill is used
    from discolib.models.latent import LatentComponents
    from discolib.samplers.latent import LatentCond, ModelFn

__all__ = [
    "DEFAULT_MAX_SIDE", "MAX_FPS", "MAX_SIZE", "MIN_FPS", "MIN_SIZE", "PhotoResult", "animate_photo", "depth_cache_path",
    "latent_inpaint", "photo_depth",
]

#: The longer side a photo is brought down to when ``size`` is not given (a 12-megapixel photo would make every
#: frame ~50x the work of a 512x512 one).
DEFAULT_MAX_SIDE = 1024
#: The largest ``size``: every frame is warped at full resolution (a 4096x4096 frame is already ~1 GB of work
#: buffers); the splat's flat indices stay exact far beyond.
MAX_SIZE = 4096
#: The smallest ``size`` (a photo's least side, :data:`~discolib.io.images.MIN_PHOTO_SIDE`).
MIN_SIZE = MIN_PHOTO_SIDE
#: The frame rates ``fps`` may take (ffmpeg refuses far lower rates; above 240 no player shows the frames).
MIN_FPS, MAX_FPS = 0.1, 240.0
#: Stereo eye baseline as a fraction of the near depth (~ an interpupillary distance for a subject ~1.3 m away).
STEREO_BASELINE = 0.05
#: Changes whenever the cached depth would differ (refinement, world-depth mapping).
_DEPTH_CACHE_VERSION = "photo-depth-v2"  # v1 could hold random-weights depths
_FILLS = ("auto", "opencv", "latent")
_STEREO = ("none", "sbs", "anaglyph")


@dataclass
class PhotoResult:
    """What :func:`animate_photo` made: the video, the run folder with the frames, the depth and the camera path."""

    video: Path
    run_dir: Path
    frames: list[Path]
    fps: float
    schedules: dict[str, str]
    depth: np.ndarray  # (H, W) world depth the frames were made with
    depth_png: Path
    fill: str
    mesh: Path | None = None
    point_cloud: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: depth, warp, fill, write, encode


def depth_cache_path(photo: torch.Tensor, model: str, size: int | None) -> Path:
    """``cache_root()/depth/<sha256>.npy``, the key being the SHA-256 of the photo's decoded 8-bit pixels and
    shape (what the depth model sees, after EXIF rotation and resizing), the model name, the size and the cache
    format version."""
    pixels = (photo.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    h = hashlib.sha256()
    for part in (_DEPTH_CACHE_VERSION, model, str(size), str(pixels.shape)):
        h.update(part.encode("utf-8") + b"\x00")
    h.update(pixels.tobytes())
    return cache_root() / "depth" / f"{h.hexdigest()}.npy"


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged: recomputed and rewritten
    if arr.shape != shape or arr.dtype != np.float32 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        return None
    return arr


def _load_estimator(model: str, device: torch.device, random_weights: bool) -> tuple[DepthEstimator, bool]:
    """The depth model (cached per process) and whether it has random weights: with ``random_weights``, when the
    real weights are unavailable, through the loader's random-weights fallback
    (:func:`~discolib.models.load.load_depth_estimator`)."""
    try:
        return load_depth(model, device), False
    except WeightsUnavailable:
        if not random_weights:
            raise
    from discolib.models.load import load_depth_estimator  # start-up time: diffusers, open_clip

    return load_depth_estimator(model, device, random_ok=True), True


def photo_depth(
    photo: torch.Tensor,
    model: str = DEFAULT_DEPTH_MODEL,
    *,
    size: int | None = None,
    device: torch.device | str = "cpu",
    random_weights: bool = False,
) -> np.ndarray:
    """The world depth ``(H, W)`` float32 of a photo ``(1, 3, H, W)``, computed once per photo and model.

    The model sees the photo at its own input size and its output is resized to the photo
    (:class:`~discolib.models.depth.TransformersDepth`); the depth edges are refined with the photo as guide
    (:func:`~discolib.animation.photo.refine_depth_edges`) and mapped to world depth
    (:func:`~discolib.animation.photo.world_depth`). The result is cached as ``.npy`` (numpy, never pickle) under
    :func:`depth_cache_path`: a second call for the same photo, model and size loads no model. A depth made with
    random weights (``random_weights`` and the real ones unavailable) is never cached: it is noise, and a later
    run with the real weights must not reuse it.
    """
    h, w = photo.shape[-2:]
    path = depth_cache_path(photo, model, size)
    cached = _read_cached(path, (h, w))  # the cache only ever holds real-weights depths
    if cached is not None:
        return cached
    estimator, is_random = _load_estimator(model, torch.device(device), random_weights)
    with torch.no_grad():
        raw = estimator(photo.to(device))
        refined = refine_depth_edges(raw, photo.to(device))
    depth = world_depth(refined[0, 0].float().cpu().numpy(), metric=bool(getattr(estimator, "metric", False)))
    if is_random:
        return depth
    try:
        with atomic_path(path, suffix=".tmp", mkdir=True) as tmp, open(tmp, "wb") as fh:
            np.save(fh, depth, allow_pickle=False)
    except OSError as exc:  # a read-only cache only costs the next run the model call
        warnings.warn(f"could not cache the photo's depth in {path.parent}: {exc.strerror or exc}", stacklevel=2)
    return depth


def latent_inpaint(
    comps: LatentComponents,
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    prompt: str = "a photo",
    steps: int = 20,
    strength: float = 0.7,
    seed: int = 0,
) -> torch.Tensor:
    """``image`` ``(1, 3, H, W)`` repainted by the latent model where ``mask`` ``(1, 1, H, W)`` is set.

    The image is padded to the VAE's multiple, encoded, noised to ``strength`` and denoised (Euler, no CFG).

    - A regular UNet (masked img2img): at every step the model's prediction is replaced, on the latent pixels the
      mask does not reach (a latent pixel is masked when any of its 8x8 pixels is, plus one latent pixel of
      context), by the prediction that leads exactly back to the image's own latents, so the known part steers the
      masked part.
    - An inpainting UNet (:attr:`~discolib.models.latent.LatentComponents.is_inpainting`, e.g. SD 1.5 inpainting):
      as diffusers' ``StableDiffusionInpaintPipeline``, the UNet's input at every step is the scaled latents, the
      mask (1 = paint) resized to the latent size (nearest) and the latents of the masked image (the image with
      the masked pixels set to 0.5 grey, i.e. 0 in the VAE's [-1, 1]), concatenated along the channels.

    The decoded result is used only where ``mask`` is set: every other pixel is returned unchanged.
    """
    from discolib.samplers.latent import LatentRequest, encode_image, sample_latent  # start-up time

    inpainting = comps.is_inpainting
    if comps.family == "sd" and not inpainting and int(comps.unet.config.in_channels) != comps.latent_channels:
        raise InputError(f"latent_model: a UNet with {comps.unet.config.in_channels} input channels is neither a "
                         f"regular ({comps.latent_channels}) nor an inpainting ({2 * comps.latent_channels + 1}) "
                         "Stable Diffusion UNet; use one of those for the fill")
    h, w = image.shape[-2:]
    f = comps.vae_scale_factor
    m = max(f, comps.family_obj.size_multiple)  # Flux: 2x2 latent patches
    ph, pw = -h % m, -w % m
    padded = F.pad(image.float(), (0, pw, 0, ph), mode="replicate")
    pmask = F.pad(mask.float(), (0, pw, 0, ph), mode="replicate")
    x0 = encode_image(comps, padded.to(comps.device))
    wrapper = _inpainting_input(comps, padded, pmask) if inpainting else _keep_known(x0, pmask.to(comps.device), f)
    request = LatentRequest(
        prompts=prompt, width=w + pw, height=h + ph, steps=steps, cfg_scale=1.0, scheduler="euler", seed=seed,
        init_latents=x0, strength=strength, model_fn_wrappers=[wrapper], check_init_range=False,
    )
    out = sample_latent(comps, request)[..., :h, :w].to(image.device, image.dtype)
    return torch.where(mask, out, image)


def _keep_known(x0: torch.Tensor, pmask: torch.Tensor, f: int) -> Callable[[ModelFn], ModelFn]:
    """Masked img2img for a regular UNet: outside the (dilated) latent mask the prediction is the one that leads
    back to the image's own latents ``x0``."""
    masked = F.max_pool2d(F.max_pool2d(pmask, f, stride=f), 3, stride=1, padding=1)
    known = 1.0 - masked

    def keep_known(model_fn: ModelFn) -> ModelFn:
        def fn(x: torch.Tensor, t: torch.Tensor, cond: LatentCond) -> torch.Tensor:
            out = model_fn(x, t, cond)
            a = cond.alpha_bar
            eps = (x - a.sqrt() * x0) / (1.0 - a).clamp(min=1e-8).sqrt()
            if cond.prediction_type == "flow":  # x = (1 - s) x0 + s n, v = n - x0 = (x - x0) / s
                assert cond.sigma is not None
                return out * masked + (x - x0) / cond.sigma.clamp(min=1e-8) * known
            target = {"epsilon": eps, "v_prediction": a.sqrt() * eps - (1.0 - a).sqrt() * x0, "sample": x0}.get(
                cond.prediction_type, out
            )
            return out * masked + target * known

        return fn

    return keep_known


def _inpainting_input(comps: LatentComponents, padded: torch.Tensor, pmask: torch.Tensor) -> Callable[[ModelFn], ModelFn]:
    """For an inpainting UNet: the model function's input becomes ``cat([x, mask, masked-image latents])``.

    Conventions of diffusers' ``StableDiffusionInpaintPipeline``: the mask is binarised (>= 0.5 paints) and resized
    to the latent size with nearest-neighbour interpolation; the masked image is the image where the mask is 0 and
    0 (in [-1, 1]) where it paints, encoded and multiplied by the VAE's scaling factor (here the posterior mean,
    so a fill is repeatable); both are concatenated after the scheduler's input scaling, unscaled.
    """
    from discolib.samplers.latent import encode_image  # start-up time

    paint = (pmask >= 0.5).float()
    hl, wl = padded.shape[-2] // comps.vae_scale_factor, padded.shape[-1] // comps.vae_scale_factor
    latent_mask = F.interpolate(paint, size=(hl, wl)).to(comps.device)
    masked_image = padded * (1.0 - paint) + 0.5 * paint
    masked_latents = encode_image(comps, masked_image.to(comps.device))

    def with_condition(model_fn: ModelFn) -> ModelFn:
        def fn(x: torch.Tensor, t: torch.Tensor, cond: LatentCond) -> torch.Tensor:
            b = x.shape[0]
            extra = torch.cat([latent_mask.expand(b, -1, -1, -1), masked_latents.expand(b, -1, -1, -1)], dim=1)
            return model_fn(torch.cat([x, extra.to(x.dtype)], dim=1), t, cond)

        return fn

    return with_condition


def _latent_inpainter(
    model: str, device: torch.device, random_weights: bool, steps: int, *, required: bool
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The learned fill with ``model`` (float32), or None when its weights are unavailable and it is not required
    (``fill="auto"``: the OpenCV fill then, with a warning)."""
    from discolib.models.load import load_latent  # start-up time: diffusers, open_clip

    try:
        comps = load_latent(model, device, torch.float32, random_ok=random_weights)
    except WeightsUnavailable as exc:
        if required:
            raise
        warnings.warn(f"fill 'auto': latent model {model!r} unavailable ({one_line(exc, 200)}); "
                      "using the OpenCV fill", stacklevel=3)
        return None
    return functools.partial(latent_inpaint, comps, steps=steps)


def _camera(camera: str | Path, n_frames: int, seconds: float, fps: float, rng: tuple[float, float]) -> dict[str, str]:
    text = str(camera)
    if text in CAMERA_PRESETS:
        return camera_preset(text, seconds=seconds, fps=fps, depth_range=rng)
    if text.lower().endswith(".json"):
        return load_camera_path(camera, n_frames=n_frames)
    return camera_preset(text, seconds=seconds, fps=fps, depth_range=rng)  # raises with the choices and a hint


@contextlib.contextmanager
def _cpu_threads(setting: int) -> Iterator[int]:
    """torch's and OpenCV's thread counts set to ``threads_for(setting)`` for the duration, then restored."""
    if isinstance(setting, bool) or not isinstance(setting, int) or not 0 <= setting <= 1024:
        raise InputError(f"threads: expected an integer from 0 (auto) to 1024, got {setting!r}")
    want = threads_for(setting)
    with cpu_threads(want):
        yield want


def _eye(pose: torch.Tensor, dx: float) -> torch.Tensor:
    shift = torch.eye(4, dtype=pose.dtype)
    shift[0, 3] = dx
    return pose @ shift


def animate_photo(
    photo: str | Path,
    out: str | Path,
    *,
    camera: str = "dolly",
    seconds: float = 4.0,
    fps: float = 24.0,
    depth_model: str = DEFAULT_DEPTH_MODEL,
    fill: Literal["auto", "opencv", "latent"] = "auto",
    latent_model: str | None = None,
    latent_steps: int = 20,
    size: int | None = None,
    stereo: Literal["none", "sbs", "anaglyph"] = "none",
    mesh: str | Path | None = None,
    point_cloud: str | Path | None = None,
    random_weights: bool = False,
    callback: Callable[[int, int], None] | None = None,
    device: str | torch.device | None = None,
    threads: int = 0,
) -> PhotoResult:
    """Animate one photo with a 3D camera move; returns where the video and frames are.

    Args:
        photo: the photo (a path or an http(s) URL).
        out: the video (``.mp4`` or ``.gif``); its frames go to a run folder beside it,
            ``<out folder>/<out name>-frames/<run id>/`` (``frames/``, ``depth.png``, ``settings.json``, ``run.json``).
        camera: a preset (:data:`~discolib.animation.photo.CAMERA_PRESETS`) or a ``path.json`` of keyframe strings
            (:func:`~discolib.animation.photo.load_camera_path`).
        seconds, fps: the clip's length and frame rate (``round(seconds * fps)`` frames).
        depth_model: a depth model (hub id, folder, ``tiny-depth-anything``, ``constant``).
        fill: how revealed areas are filled. Every frame pastes the background layer (built once, in photo
            coordinates, re-warped by the frame's pose: the fill does not flicker) into the revealed pixels and
            inpaints what even the layer misses with OpenCV TELEA. ``"opencv"``: the layer's made-up parts (the
            pushed-back foreground edges, the margin) come from depth-aware propagation and reflection;
            ``"latent"``: they are repainted once by ``latent_model`` (:func:`latent_inpaint`: masked img2img, or
            an inpainting checkpoint's own mask conditioning);
            ``"auto"``: ``"latent"`` when ``latent_model`` is given and its weights can be loaded, else
            ``"opencv"``.
        latent_model: a latent preset, hub id or diffusers folder for the learned fill.
        latent_steps: its denoising steps for the whole schedule (img2img runs 70% of them).
        size: the longer side the photo is brought down to (multiples of 8); default :data:`DEFAULT_MAX_SIDE`.
        stereo: ``"sbs"`` (left | right, double width) or ``"anaglyph"`` (red-cyan) instead of a plain video.
        mesh, point_cloud: also write the photo as a textured GLB mesh / a PLY point cloud there.
        random_weights: a depth model whose weights are unavailable is replaced by random weights (tests).
        callback: ``callback(frames_done, n_frames)`` after each frame is handed to the writer.
        device: where the depth model and the warps run (default the CPU); the OpenCV inpainting of what the
            background layer does not cover runs on the host.
        threads: CPU threads for torch, OpenCV, the PNG encoders and ffmpeg (as ``models.threads``: 0 = auto, one
            fewer than the CPUs; on a 2-core machine 2 threads made the warps 10x slower while the PNG encoders ran).
    """
    t_start = time.perf_counter()
    if fill not in _FILLS:
        raise InputError(f"fill: expected one of {', '.join(_FILLS)}, got {fill!r}")
    if stereo not in _STEREO:
        raise InputError(f"stereo: expected one of {', '.join(_STEREO)}, got {stereo!r}")
    if isinstance(latent_steps, bool) or not isinstance(latent_steps, int) or not 1 <= latent_steps <= 1000:
        raise InputError(f"latent_steps: expected an integer from 1 to 1000, got {latent_steps!r}")
    if fill == "latent" and not latent_model:
        raise InputError("fill: 'latent' needs latent_model (a latent preset, hub id or diffusers folder)")
    use_latent = fill == "latent" or (fill == "auto" and bool(latent_model))
    n_frames = frame_count(seconds, fps)
    if not MIN_FPS <= fps <= MAX_FPS:  # ffmpeg refuses rates far outside this, after every frame was rendered
        raise InputError(f"fps: expected a frame rate from {MIN_FPS:g} to {MAX_FPS:g}, got {fps!r}")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE
    ):
        raise InputError(f"size: expected a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    out_path = expand_path(out, setting="out")
    if out_path.suffix.lower() not in (".mp4", ".gif"):
        raise InputError(f"out: expected a video file ending in .mp4 or .gif, got {str(out)!r}")
    # The extra outputs are checked before the render, not after minutes of it: "~" expanded, the folder there.
    extra: dict[str, Path | None] = {"mesh": None, "point_cloud": None}
    for name, target in (("mesh", mesh), ("point_cloud", point_cloud)):
        if target is None:
            continue
        want = ".glb" if name == "mesh" else ".ply"
        if Path(target).suffix.lower() != want:
            raise InputError(f"{name}: expected a file ending in {want}, got {str(target)!r}")
        where = expand_path(target, setting=name)
        if not where.parent.is_dir():
            raise InputError(f"{name}: the folder {str(where.parent)!r} does not exist")
        extra[name] = where
    # A bad camera fails before the photo is read and the depth model runs.
    if str(camera).lower().endswith(".json"):
        load_camera_path(camera, n_frames=n_frames)
    elif str(camera) not in CAMERA_PRESETS:
        camera_preset(str(camera), seconds=seconds, fps=fps, depth_range=(1.0, 2.0))
    with _cpu_threads(threads) as n_threads:
        dev = torch.device(device) if device is not None else torch.device("cpu")

        image = load_photo(photo, setting="photo", max_side=size or DEFAULT_MAX_SIDE).to(dev)
        h, w = image.shape[-2:]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        depth_np = photo_depth(image, depth_model, size=size, device=dev, random_weights=random_weights)
        timings["depth"] = time.perf_counter() - t0
        rng = depth_range(depth_np)
        schedules = _camera(camera, n_frames, seconds, fps, rng)
        poses = absolute_poses(schedules, n_frames)
        fovs = fov_values(schedules, n_frames)
        depth = torch.from_numpy(depth_np).view(1, 1, h, w).to(dev)

        inpaint = None
        if use_latent:  # loaded before the run folder is made: an unavailable model leaves nothing behind
            assert latent_model is not None
            inpaint = _latent_inpainter(latent_model, dev, random_weights, latent_steps, required=fill == "latent")
        fill_used = "latent" if inpaint is not None else "opencv"

        run_settings = {
            "kind": "animate_photo", "photo": str(photo), "camera": str(camera), "seconds": seconds, "fps": fps,
            "depth_model": depth_model, "fill": fill_used, "latent_model": latent_model, "size": size,
            "stereo": stereo, "fov": PHOTO_FOV_DEG, "depth_range": list(rng), "schedules": schedules,
        }
        # The background layer (with the latent fill: minutes) is built before the run folder exists, so that a
        # failure or Ctrl-C there leaves nothing behind; everything after the folder is made is in the try below.
        t0 = time.perf_counter()
        baseline = STEREO_BASELINE * rng[0]
        eye_poses = poses
        if stereo != "none":
            eye_poses = torch.stack([_eye(p, dx) for p in poses for dx in (-baseline / 2, baseline / 2)])
        reach = reveal_reach(eye_poses, rng, PHOTO_FOV_DEG, (h, w))
        state = FillState(background_layer(image, depth, PHOTO_FOV_DEG, reach=reach, inpaint=inpaint))
        timings["fill"] = time.perf_counter() - t0
        timings["warp"] = 0.0
        timings["write"] = 0.0
        frames: list[Path] = []
        folder = RunFolder.create(out_path.parent, f"{out_path.stem}-frames", json.dumps(run_settings, indent=1))
        with folder.lock():
            record = folder.read_record()
            record.frames_total = n_frames
            record.status = "running"
            folder.write_record(record)
            writer = FrameWriter(folder, record, encoders=min(4, max(1, n_threads // 2)))
            try:
                depth_png = save_depth_png(torch.from_numpy(depth_np), folder.path / "depth.png")
                for k in range(n_frames):
                    fov_k = float(fovs[k])
                    target_fov = None if fov_k == PHOTO_FOV_DEG else fov_k
                    poses_k = [poses[k]] if stereo == "none" else [_eye(poses[k], -baseline / 2), _eye(poses[k], baseline / 2)]
                    views = []
                    for pose in poses_k:
                        t0 = time.perf_counter()
                        frame, revealed = warp_photo(image, depth, pose, PHOTO_FOV_DEG, target_fov_deg=target_fov)
                        t1 = time.perf_counter()
                        frame, _ = fill_revealed(frame, revealed, state.at(pose, target_fov))
                        timings["warp"] += t1 - t0
                        timings["fill"] += time.perf_counter() - t1
                        views.append(frame)
                    if stereo == "sbs":
                        frame = side_by_side(views[0], views[1])
                    elif stereo == "anaglyph":
                        frame = anaglyph(views[0], views[1])
                    else:
                        frame = views[0]
                    t0 = time.perf_counter()
                    frames.append(writer.submit(k, PendingFrame.from_image(frame), 0))  # no host sync on a GPU
                    timings["write"] += time.perf_counter() - t0
                    if callback is not None:
                        callback(k + 1, n_frames)
                t0 = time.perf_counter()
                writer.close()
                timings["write"] += time.perf_counter() - t0
            except BaseException as exc:
                writer.close(raise_errors=False)
                record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                record.error = f"{type(exc).__name__}: {exc}"
                folder.write_record(record)
                raise
            record.status = "done"
            folder.write_record(record)
        t0 = time.perf_counter()
        video = frames_to_video(folder.frames_dir, out_path, fps=fps, threads=n_threads)
        timings["encode"] = time.perf_counter() - t0
        photo_u8 = (image[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        glb, ply = extra["mesh"], extra["point_cloud"]
        mesh_path = export_glb(photo_u8, depth_np, glb, fov_deg=PHOTO_FOV_DEG) if glb is not None else None
        cloud_path = export_ply(photo_u8, depth_np, ply, fov_deg=PHOTO_FOV_DEG) if ply is not None else None
        timings["total"] = time.perf_counter() - t_start
        return PhotoResult(
            video=video, run_dir=folder.path, frames=frames, fps=float(fps), schedules=schedules, depth=depth_np,
            depth_png=depth_png, fill=fill_used, mesh=mesh_path, point_cloud=cloud_path, timings=timings,
        )

