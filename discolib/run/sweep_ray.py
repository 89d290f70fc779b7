"""The Ray executor of a sweep: each variant a Ray task, on this machine or a Ray cluster.

The driver (:func:`run_ray`) submits one task per variant and loops on ``ray.wait``; each finished task hands back
the variant's state, which the driver passes to ``on_state`` (the sweep writes ``sweep.json`` there: only the
driver writes it). A task renders its variant with the sweep's runner (:func:`discolib.run.sweep_folder.run_variant`) into
the shared sweep folder, inside :func:`~discolib.models.load.shared_models` with the worker's process-wide cache
(:data:`~discolib.models.load.WORKER_MODELS`), so a worker that runs several variants of one model loads it once.

Fault tolerance: a worker process that dies (SIGKILL, out of memory, a lost node) makes Ray retry its task
(``max_retries``); the retried runner resumes the variant's run folder from its last complete frame (the run lock is
an ``flock``, which the kernel drops with the dead process), so the frames are the bytes an uninterrupted run makes.
A variant's own error (bad settings, a missing file, a model that cannot load) is not retried: the runner returns
it as status ``failed`` with its one-line error, and the other variants go on. A task that still fails when Ray
gives up becomes ``failed`` with Ray's reason on one line.

The runner and the driver's state of a variant default to :mod:`discolib.run.sweep_folder`'s ``run_variant`` and
``variant_on_disk`` (that module, not :mod:`discolib.run.sweep`, which imports this one: no import circle).

``ray`` is the optional extra ``discolib[ray]``: it is imported only inside the functions that use it, so importing
this module (and the local executor) never needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from discolib.errors import InputError, one_line

if TYPE_CHECKING:  # annotations only: the config layer's sweep types (torch-free, below this layer)
    from discolib.config.sweep import SweepSpec, Variant

#: A variant's state (:class:`discolib.run.sweep.VariantState`): a dataclass with ``id``, ``status`` and ``error``.
_State = TypeVar("_State")

__all__ = ["DEFAULT_MAX_RETRIES", "TASK_PREFIX", "RayUnavailable", "ray_available", "run_ray", "task_name"]

#: Retries of a variant's task after its worker process died (a kill, out of memory, a lost node). Each retry
#: resumes the variant from its last frame, so a retry costs at most one frame's work plus a worker start.
DEFAULT_MAX_RETRIES = 3

#: Each task is named ``TASK_PREFIX + variant id``: the name Ray shows (``ray list tasks``, the worker's process
#: title ``ray::<name>`` while it runs), so a person or a test can find the worker rendering a variant.
TASK_PREFIX = "discolib-sweep:"

#: How long a local Ray started here waits for its node agent (ms). Ray's default is too short on a loaded 2-core
#: machine, where the agent's imports alone took ~20 s (measured while other processes kept both cores busy).
AGENT_TIMEOUT_MS = 120_000


class RayUnavailable(InputError):
    """``--executor ray`` without Ray installed, or a Ray cluster that cannot be reached."""


def ray_available() -> bool:
    """Whether ``import ray`` works here (the optional extra ``discolib[ray]``)."""
    try:
        import ray  # noqa: F401  # why here: ray is the optional extra discolib[ray]
    except ImportError:
        return False
    return True


def task_name(variant_id: str) -> str:
    """The Ray task name of a variant (see :data:`TASK_PREFIX`)."""
    return TASK_PREFIX + variant_id


def _import_ray() -> Any:
    try:
        import ray  # why here: ray is the optional extra discolib[ray]; the local executor never needs it
    except ImportError:
        raise RayUnavailable(
            "executor: 'ray' needs Ray, which is not installed: pip install 'discolib[ray]' (or use --executor local)"
        ) from None
    return ray


def _init_ray(ray: Any, address: str | None) -> bool:
    """Connect to Ray; True when this call started it (then :func:`run_ray` shuts it down at the end).

    An already initialised Ray (a notebook's, a test's) is reused as it is. ``address`` None starts a local Ray on
    this machine bound to the loopback address (nothing listens on the network) without its dashboard; an address
    (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``) joins that cluster.
    """
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                configure_logging=False,
                # A busy machine can take longer than Ray's default to start the node's agent process.
                _system_config={"agent_register_timeout_ms": AGENT_TIMEOUT_MS},
            )
        else:
            ray.init(address=address, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise RayUnavailable(f"--ray-address: cannot start or reach {where}: {one_line(exc, 300, lines='first')}") from None
    return True


def _variant_task(runner: Callable[..., _State], spec: SweepSpec, variant: Variant, sweep_dir: str, threads: int) -> _State:
    """The body of a variant's Ray task, run in a worker process: ``runner(spec, variant, sweep_dir)`` inside the
    worker's model cache.

    ``threads``: the driver's torch intra-op thread count. Ray starts its workers with ``OMP_NUM_THREADS=1``; the
    variant's ``models.threads: 0`` (auto) must resolve here as it would in the driver (the local executor), or the
    last bits of CPU frames would differ between the two executors. The worker's own count is restored after.
    """
    from discolib.models.load import WORKER_MODELS, shared_models  # why here: the worker side only (torch)
    from discolib.run.loop import cpu_threads  # why here: the worker side only (torch, the render loop)

    with cpu_threads(threads) if threads >= 1 else contextlib.nullcontext(), shared_models(WORKER_MODELS):
        return runner(spec, variant, Path(sweep_dir), progress=False)


def _driver_threads() -> int:
    """The torch intra-op thread count of this process (what the local executor resolves ``auto`` from)."""
    # why here: torch_threads imports torch; importing this module stays light
    from discolib.run.runs import torch_threads

    return torch_threads()[0]


def _task_error(exc: BaseException) -> str:
    """Ray's reason a task failed for good, on one line (a dead worker, out of memory, a cancelled task)."""
    cause = getattr(exc, "cause", None)  # RayTaskError: the exception raised inside the task
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {one_line(cause, 300, lines='first')}"
    return f"ray: {type(exc).__name__}: {one_line(exc, 300, lines='first')}"


def run_ray(
    spec: SweepSpec,
    sweep_dir: Path,
    variants: Sequence[Variant],
    *,
    address: str | None = None,
    gpus_per_run: float | None = None,
    progress: bool = False,
    on_state: Callable[[_State], None],
    runner: Callable[..., _State] | None = None,
    state_of: Callable[[Variant], _State] | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> list[_State]:
    """Render ``variants`` of ``spec`` as Ray tasks into ``sweep_dir``; returns their states in ``variants``' order.

    Args:
        spec: the sweep (sent to the cluster once, shared by every task).
        sweep_dir: the sweep folder; every worker must see it at the same path (a shared file system on a cluster).
        variants: those to run (the caller leaves out the finished ones).
        address: None: a local Ray on this machine (or the Ray already initialised in this process); else the
            address of a running cluster (``"auto"``, ``"ray://head:10001"``).
        gpus_per_run: each task's GPU share (``1`` = one GPU per variant, ``0.5`` = two per GPU); 0: none; None: one
            when the cluster has GPUs, else none.
        progress: a progress bar over the variants in this process (workers never draw bars).
        on_state: called in this process with each variant's final state when its task returns (``"done"``,
            ``"failed"``), or ``"interrupted"`` for the tasks still queued or running after Ctrl-C or a Ray failure;
            until then sweep.json keeps a variant ``"pending"``.
        runner: ``runner(spec, variant, sweep_dir, progress=False) -> state``, run in a worker
            (default :func:`discolib.run.sweep_folder.run_variant`; a module-level function, sent by reference).
        state_of: a variant's state as its run folder says, in this process (default: ``variant_on_disk`` of the
            sweep folder): the base of a state Ray's failure or an interruption decides.
        max_retries: Ray's retries of a task whose worker died; each retry resumes the variant.

    Raises:
        RayUnavailable: Ray is not installed or the cluster cannot be reached.
        KeyboardInterrupt: after cancelling the tasks still running (their runs stay resumable).
    """
    if gpus_per_run is not None and (
        isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, int | float) or not 0 <= gpus_per_run <= 1024
    ):
        raise InputError(f"--gpus-per-run: expected a GPU share from 0 to 1024 (0.5 = two variants per GPU), got {gpus_per_run!r}")
    ray = _import_ray()
    sweep_dir = Path(sweep_dir).resolve()  # workers may start in another working directory
    threads = _driver_threads()
    if runner is None or state_of is None:
        from discolib.run import sweep_folder  # why here: run_variant renders (torch), only when a sweep runs

        runner = runner or sweep_folder.run_variant  # type: ignore[assignment]
        state_of = state_of or functools.partial(sweep_folder.variant_on_disk, sweep_dir)  # type: ignore[assignment]
    started_here = _init_ray(ray, address)

    def state(variant: Variant, status: str, error: str = "") -> _State:
        return dataclasses.replace(state_of(variant), status=status, error=error)  # type: ignore[type-var]

    states: dict[str, _State] = {}
    pending: dict[Any, Variant] = {}
    bar = None
    try:
        if progress:
            from tqdm.auto import tqdm  # why here: a bar only when asked for

            bar = tqdm(total=len(variants), desc="sweep (ray)", unit="variant")
        task = ray.remote(_variant_task)
        if gpus_per_run is None:
            # Not asked: one GPU per variant on a cluster that has GPUs (a task with no GPU share would see either no
            # GPU or every GPU unaccounted, depending on Ray's version), none elsewhere.
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        options = {
            "num_cpus": 1,
            "num_gpus": float(gpus_per_run),
            "max_retries": max(0, int(max_retries)),
            "retry_exceptions": False,  # a variant's own error is its result (status failed), never a retry
        }
        spec_ref = ray.put(spec)
        for variant in variants:
            ref = task.options(name=task_name(variant.id), **options).remote(runner, spec_ref, variant, str(sweep_dir), threads)
            pending[ref] = variant  # "pending" in sweep.json until its result comes (a queued task is not running)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                variant = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task failed for good: retries spent, out of memory, cancelled
                    result = state(variant, "failed", _task_error(exc))
                states[variant.id] = result
                on_state(result)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{variant.id} {getattr(result, 'status', '')}", refresh=False)
    except BaseException:  # Ctrl-C, or Ray itself failing (a lost cluster): no variant is left saying "running"
        for ref, variant in pending.items():
            try:
                ray.cancel(ref, force=True)  # the runs stay resumable: a re-run of the sweep continues them
            except Exception:  # noqa: S110 - the cluster may be gone; the state below is what matters
                pass
            states[variant.id] = state(variant, "interrupted")
            on_state(states[variant.id])
        raise
    finally:
        if bar is not None:
            bar.close()
        if started_here:
            ray.shutdown()
    return [states[v.id] for v in variants]
