"""The per-run plan: everything about a render that is fixed before its first frame, computed once from Settings.

:meth:`RenderPlan.from_settings` is the one place that turns Settings into per-frame numbers: the frame count,
every frame's seed (Deforum's ``seed_behavior``), every keyframe schedule evaluated for all frames at once, the
prompt schedules, where the first frame's init comes from (an image, a video's first frame, a video's frames), the
per-frame init strength / init-loss scale / CFG scale each sampler family reads, and named random streams per
purpose. The render loop and :class:`~discolib.animation.step.AnimationStep` only index it.

A plan is a pure function of the settings (and the run seed in them), so a resumed run rebuilds the same plan.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from discolib.animation.policy import AnimationPolicy, policy_for
from discolib.animation.video_input import video_guidance, video_seed_base
from discolib.audio import AudioFeatures, audio_duration
from discolib.config.settings import Settings, SettingsError
from discolib.io.files import safe_folder_name
from discolib.io.images import check_image, load_image
from discolib.io.inputs import expand_path
from discolib.io.video import first_frame, read_video_frames, video_info
from discolib.ops import stream_seed
from discolib.schedules.keyframes import Schedule
from discolib.schedules.prompts import FramePrompts, PromptSchedule

__all__ = [
    "RenderPlan",
    "audio_cache_dir",
    "check_inputs",
    "plan_audio",
    "SCHEDULE_FIELDS",
    "VIDEO_SUFFIXES",
    "diffused_frames",
    "frame_seeds",
    "evaluate_schedules",
]

#: Settings whose keyframe strings are evaluated per frame.
SCHEDULE_FIELDS = (
    "angle",
    "zoom",
    "translation_x",
    "translation_y",
    "translation_z",
    "rotation_3d_x",
    "rotation_3d_y",
    "rotation_3d_z",
    "transform_center_x",
    "transform_center_y",
    "fov",
    "near",
    "far",
    "aspect_ratio_schedule",
    "noise_schedule",
    "strength_schedule",
    "contrast_schedule",
    "cfg_scale_schedule",
    "antiblur_amount",
    "antiblur_sigma",
    "antiblur_kernel",
    "antiblur_threshold",
    "perspective_flip_theta",
    "perspective_flip_phi",
    "perspective_flip_gamma",
    "perspective_flip_fv",
)

#: An init image with one of these suffixes is a video: its first frame starts the animation.
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")

def evaluate_schedules(
    settings: Settings, n_frames: int, seed: int, audio: AudioFeatures | None = None
) -> dict[str, np.ndarray]:
    """Every keyframe schedule evaluated for all frames at once: name -> float64 array ``(n_frames,)``; ``audio``
    (the soundtrack's features) for the schedules that read it."""
    anim = settings.animation
    out: dict[str, np.ndarray] = {}
    for name in SCHEDULE_FIELDS:
        sched = Schedule.parse(getattr(anim, name), setting=f"animation.{name}", interpolation=anim.interpolation)
        out[name] = sched.values(n_frames, seed=seed, audio=audio)
    return out


def audio_cache_dir(settings: Settings) -> Path:
    """Where a render keeps its soundtrack analyses: ``<output_root>/<batch>/.cache/audio`` (inside the folder the
    user chose; shared by the batch's runs, so a resume or a second render of the same song does not re-analyse)."""
    root = expand_path(settings.run.output_root, setting="run.output_root")
    return root / safe_folder_name(settings.run.batch_name) / ".cache" / "audio"


def plan_audio(settings: Settings, cache_dir: Path | None = None) -> AudioFeatures | None:
    """The soundtrack's features when the schedules or prompts read them (else None: no analysis), cached in
    ``cache_dir`` (default :func:`audio_cache_dir`)."""
    if not settings.uses_audio():
        return None
    return settings.audio_features(audio_cache_dir(settings) if cache_dir is None else cache_dir)


def diffused_frames(settings: Settings, n_frames: int, policy: AnimationPolicy | None = None) -> list[bool]:
    """Which frames the sampler diffuses: every frame, except that with ``animation.cadence`` c > 1 in 2D / 3D only
    frames ``i % c == 0`` are (Deforum's ``diffusion_cadence``, Disco's ``turbo_steps``), plus frames
    ``0 .. turbo_preroll`` when the policy has a preroll (Disco: ``frame_num <= turbo_preroll``). Video Input and
    stills diffuse every frame (Deforum sets its cadence to 1 for video inits)."""
    anim = settings.animation
    policy = policy or policy_for(settings.image.mode)
    c = anim.cadence
    if anim.animation_mode not in ("2D", "3D") or c <= 1:
        return [True] * n_frames
    preroll = anim.turbo_preroll if policy.preroll else -1
    return [i % c == 0 or i <= preroll for i in range(n_frames)]


def _next_seed(behavior: str, seed: int, k: int, iter_n: int, rng: np.random.Generator) -> int:
    """The seed of the ``k``-th diffusion (k >= 1) from the one before it, re-deriving Deforum's ``next_seed``: a
    counter that starts at 0 and counts calls decides the step (iter: +1 when ``counter % N == 0``, so N 2 gives
    +1, +0, +1, +0 ...; ladder: +2, -1, ...; alternate: +1, -1, ...); random draws from the run's generator."""
    if behavior == "iter":
        return seed + 1 if (k - 1) % iter_n == 0 else seed
    if behavior == "ladder":
        return seed + 2 if (k - 1) % 2 == 0 else seed - 1
    if behavior == "alternate":
        return seed + 1 if (k - 1) % 2 == 0 else seed - 1
    if behavior == "random":
        return int(rng.integers(0, 2**32))
    return seed  # fixed


def frame_seeds(
    settings: Settings,
    n_frames: int,
    seed: int,
    policy: AnimationPolicy | None = None,
    audio: AudioFeatures | None = None,
) -> list[int]:
    """The seed of every frame (Deforum's ``seed_behavior``), fixed before the loop so a resume reuses them.

    The seed advances once per diffused frame when the policy says so (Deforum calls ``next_seed`` after each
    diffusion: with cadence 3 frames 0, 3, 6 get seed, seed+1, seed+2), else once per frame (Disco). An in-between
    cadence frame records the seed of the diffused frame before it (the one whose sample it carries).
    ``iter``: seed + ceil(k / seed_iter_n) for the k-th step (N 2: 1000, 1001, 1001, 1002 ...); ``fixed``;
    ``random`` (drawn from a generator seeded with the run seed, so a run is reproducible); ``ladder``: +2, -1,
    +2, -1 ...; ``alternate``: +1, -1 ...; ``schedule`` (sd-webui-deforum): ``seed_schedule`` interpolated linearly
    and truncated to an integer at each diffused frame (``s`` is the run seed; -1 means random). Stills take the
    next seed for every image, as Disco's batches.
    """
    anim = settings.animation
    still = anim.animation_mode == "None"
    policy = policy or policy_for(settings.image.mode)
    behavior = "iter" if still else anim.seed_behavior
    base, continuity = video_seed_base(settings, seed)  # Disco's Video Input: seed + 1 + k, or the run seed
    if continuity:
        behavior = "fixed"
    iter_n = 1 if still else anim.seed_iter_n
    diffused = [True] * n_frames if still else diffused_frames(settings, n_frames, policy)
    per_diffusion = still or policy.seeds_per_diffused_frame
    rng = np.random.default_rng(seed)
    scheduled = None
    if behavior == "schedule":
        scheduled = Schedule.parse(anim.seed_schedule, setting="animation.seed_schedule", interpolation="linear").values(
            n_frames, seed=seed, audio=audio
        )
    seeds: list[int] = []
    s, k = base, 0
    for i in range(n_frames):
        if i > 0 and (diffused[i] or not per_diffusion):
            k += 1
            if scheduled is None:
                s = _next_seed(behavior, s, k, iter_n, rng)
        if scheduled is not None and (diffused[i] or not per_diffusion):
            v = int(scheduled[i])  # webui: int() of the interpolated series (truncation towards zero)
            s = int(rng.integers(0, 2**32)) if v == -1 else v
        seeds.append(s % 2**32)
    return seeds


def check_inputs(settings: Settings) -> None:
    """Files a run of ``settings`` will read must exist and be readable before a run folder is made.

    Images (init image, image prompts) are opened and decoded now, URLs fetched once (the bytes are cached for
    the run): a missing, unreadable, corrupt or oversized image, or a dead link, fails here with one line.
    """
    animated = settings.animation.animation_mode != "None"
    if settings.animation.animation_mode == "Video Input":
        video_info(settings.animation.video_init_path)
    init = settings.guidance.init_image
    if init and Path(init).suffix.lower() in VIDEO_SUFFIXES:  # an animation may start from a video's first frame
        video_info(init, setting="guidance.init_image")
    elif init:
        check_image(init, setting="guidance.init_image")
    if settings.prompts.image_prompts:
        schedule = PromptSchedule.from_any(settings.prompts.image_prompts, setting="prompts.image_prompts")
        # every key's images (keys past the last frame too, as before; beat_frame keys need no song for this)
        for source in dict.fromkeys(p.text for fp in schedule.prompts for p in fp.positive):  # each distinct image once
            check_image(source, setting="prompts.image_prompts")
    out = settings.output
    if animated and out.make_video and out.soundtrack and out.video_format == "mp4":
        audio_duration(out.soundtrack)  # a bad audio file must not surface after the last frame
    audio = plan_audio(settings)  # analysed (and cached) now: a bad song fails before the run folder exists
    if audio is not None and animated:
        # The schedules, seeds and prompt keys that read the song, on its real features: a domain error
        # (log(bass(t)) on a silent frame), a value out of its range (fov 0 where the bass is) or a beat_frame(n)
        # of a song without beats is reported now, not mid-run.
        n = settings.n_frames()
        settings.check_schedule_ranges(evaluate_schedules(settings, n, 0, audio))
        frame_seeds(settings, n, 0, audio=audio)
        for name in ("prompts.text_prompts", "prompts.image_prompts"):
            if settings.get(name):
                PromptSchedule.from_any(settings.get(name), setting=name).items(n, audio)


@dataclass(frozen=True)
class RenderPlan:
    """A render's fixed facts, indexed by frame.

    Attributes:
        settings: the validated settings the plan was made from (with the run seed drawn).
        motion: ``animation.animation_mode``: ``"None"`` (stills), ``"2D"``, ``"3D"`` or ``"Video Input"``.
        n_frames: images the run makes: ``run.n_batches`` stills, or ``animation.max_frames`` frames.
        seeds: each frame's seed.
        values: each keyframe schedule of :data:`SCHEDULE_FIELDS` as a float64 array ``(n_frames,)`` (empty for
            stills, which read no schedule).
        prompts, image_prompts: the text and image prompt schedules (``image_prompts`` None without any).
        audio: the soundtrack's features when the schedules or prompts read them, else None.
        strength: each frame's init strength in Deforum's sense (fraction of the init kept): the latent
            ``strength_schedule``, or guided mode's ``frames_skip_steps`` as a fraction, the same for every frame.
        first_strength: frame 0's (and a still's) init strength: ``latent.strength``, or
            ``guidance.skip_steps / image.steps`` in guided mode.
        init_scale: guided mode's init-loss scale for frames after the first (``frames_scale``); None in latent mode.
        cfg_scale: each frame's CFG scale in latent mode (``cfg_scale_schedule``); None for stills (they use
            ``latent.cfg_scale``) and in guided mode (no CFG).
    """

    settings: Settings
    motion: str
    n_frames: int
    seeds: tuple[int, ...]
    values: Mapping[str, np.ndarray]
    prompts: PromptSchedule
    image_prompts: PromptSchedule | None
    strength: np.ndarray
    first_strength: float
    init_scale: float | None
    cfg_scale: np.ndarray | None
    audio: AudioFeatures | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, audio: AudioFeatures | None = None) -> RenderPlan:
        """The plan of ``settings`` (validated, with a fixed ``run.seed``); ``audio``: the soundtrack's features
        (default: :func:`plan_audio`'s, analysed or loaded from the batch's cache when the settings read them)."""
        anim, seed = settings.animation, settings.run.seed
        animated = anim.animation_mode != "None"
        if audio is None:
            audio = plan_audio(settings)
        n = settings.n_frames()
        values = evaluate_schedules(settings, n, seed, audio) if animated else {}
        guided = settings.image.mode == "guided"
        if guided:
            strength = np.full(n, settings.frames_skip_fraction() if animated else 0.0)
            first = settings.guidance.skip_steps / settings.image.steps
            init_scale: float | None = anim.frames_scale
            video = video_guidance(settings)
            if video is not None:  # Disco's Video Input overrides: video_init_steps' skips, video_init_frames_scale
                strength, first, init_scale = video.strengths(n), video.first_strength, video.init_scale
        else:
            strength = values["strength_schedule"] if animated else np.zeros(n)
            first = settings.latent.strength
            if anim.animation_mode == "Video Input":
                # deforum-stable-diffusion: a video frame is an init image, with latent.strength on every frame (the
                # strength schedule only applies to warped frames; webui uses the schedule: docs/COMPAT.md).
                strength = np.full(n, first)
            init_scale = None
        image_prompts = None
        if settings.prompts.image_prompts:
            image_prompts = PromptSchedule.from_any(settings.prompts.image_prompts, setting="prompts.image_prompts")
        return cls(
            settings=settings,
            motion=anim.animation_mode,
            n_frames=n,
            seeds=tuple(frame_seeds(settings, n, seed, audio=audio)),
            values=values,
            prompts=PromptSchedule.from_any(settings.prompts.text_prompts, setting="prompts.text_prompts"),
            image_prompts=image_prompts,
            strength=strength,
            first_strength=first,
            init_scale=init_scale,
            cfg_scale=values["cfg_scale_schedule"] if animated and not guided else None,
            audio=audio,
        )

    @property
    def animated(self) -> bool:
        return self.motion != "None"

    def value(self, name: str, i: int) -> float:
        """Schedule ``name`` at frame ``i`` as a Python float."""
        return float(self.values[name][i])

    def prompts_at(self, i: int) -> tuple[FramePrompts, FramePrompts | None]:
        """The text and image prompts that hold at frame ``i`` (stills all use frame 0's, as Disco)."""
        if not self.animated:
            first = self.image_prompts.at(0, None, self.audio) if self.image_prompts else None
            return self.prompts.at(0, None, self.audio), first
        n, audio = self.n_frames, self.audio
        return self.prompts.at(i, n, audio), self.image_prompts.at(i, n, audio) if self.image_prompts else None

    def generator(self, purpose: str, i: int) -> torch.Generator:
        """A CPU generator of its own for ``purpose`` at frame ``i`` (never the global RNG): seeded by
        :func:`discolib.ops.stream_seed` from the frame's seed, so it never draws the frame's diffusion noise or
        another frame's stream, even with ``seed_behavior`` fixed.

        ``"coherence"``: the noise of frame ``i``'s coherence step (disocclusion fill, noise schedule).
        """
        return torch.Generator("cpu").manual_seed(stream_seed(self.seeds[i], f"{purpose}:{i}"))

    # ------------------------------------------------------------------------------------------ inputs
    def init_image(self, device: torch.device) -> torch.Tensor | None:
        """``guidance.init_image`` as ``(1, 3, H, W)`` in [0, 1] on ``device`` (a video's first frame for a video
        file), or None. Loaded here once: the samplers never read files."""
        path = self.settings.guidance.init_image
        if not path:
            return None
        size = (self.settings.image.width, self.settings.image.height)
        if Path(path).suffix.lower() in VIDEO_SUFFIXES:
            return first_frame(path, size, setting="guidance.init_image").to(device)  # animate a video's first frame
        return load_image(path, size, setting="guidance.init_image").to(device)

    def video_frames(self, start: int) -> Iterator[torch.Tensor]:
        """Video Input mode's init frames from frame ``start`` on, ``(1, 3, H, W)`` in [0, 1] on the CPU.

        Raises SettingsError (naming ``animation.video_init_path``) when the video runs out before the last frame.
        """
        anim = self.settings.animation
        frames = read_video_frames(
            anim.video_init_path,
            every_nth=anim.extract_nth_frame,
            size=(self.settings.image.width, self.settings.image.height),
            max_frames=self.n_frames,
        )
        for i in range(self.n_frames):
            frame = next(frames, None)
            if frame is None:
                raise SettingsError(
                    f"the video has fewer usable frames than max_frames ({self.n_frames}) at extract_nth_frame "
                    f"{anim.extract_nth_frame}; lower animation.max_frames",
                    field="animation.video_init_path",
                )
            if i >= start:  # frames already rendered: their inputs are read and skipped
                yield frame
