"""Where the tasks run. Both engines take the planned tasks and yield one manifest row
per task as soon as it is finished (in finishing order), so the caller writes the
manifest and moves the progress bar while the work goes on.

- ``local``: a pool of processes on this machine, one model per process, the CPUs
  split between them.
- ``ray``: Ray Data streams the task list through ``map_batches`` on a fixed pool of
  actors, each holding one model; the actors write the outputs themselves and send
  back only the manifest rows, so nothing is gathered in memory.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import socket
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict

import numpy as np

from .. import runtime
from ..settings import forwarded_environment
from .plan import Options, Task
from .worker import Worker, available_cpus, start_runtime

log = logging.getLogger("animegan")
RAY_INSTALL = 'pip install "animegan[ray]"'


class EngineError(RuntimeError):
    """The engine cannot run (Ray missing, workers that cannot start); says what to do."""


def split_cpus(workers: int | None, threads: int | None, cpus: int) -> tuple[int, int]:
    """(workers, threads per worker) filling ``cpus``: one thread per worker unless told
    otherwise (on a CPU, two models on one thread each outrun one model on two)."""
    if workers and not threads:
        threads = max(1, cpus // workers)
    threads = threads or 1
    workers = workers or max(1, cpus // threads)
    return workers, threads


# -- local --------------------------------------------------------------------------------------
class _LocalTasks:
    """A worker process's model, made on its first task (a failure is told per task)."""

    def __init__(self, options: Options, threads: int) -> None:
        self.options, self.threads, self.worker = options, threads, None

    def __call__(self, task: Task) -> dict:
        if self.worker is None:
            try:
                self.worker = Worker(self.options, self.threads)
            except Exception as exc:
                raise EngineError(f"a worker could not load the model: {exc}") from None
        return self.worker(task)


def _local_init(options: Options, threads: int) -> None:
    """A new worker process: its runtime (with its share of the CPUs) keeps its tasks' runner."""
    start_runtime(threads).shared("batch.tasks", lambda: _LocalTasks(options, threads))


def _local_task(task: Task) -> dict:
    return runtime.get().shared("batch.tasks", lambda: None)(task)


def run_local(options: Options, tasks: list[Task], workers: int | None = None,
              threads: int | None = None) -> Iterator[dict]:
    """A process pool (spawned, so no thread state is forked), two tasks queued per worker."""
    workers, threads = split_cpus(workers, threads, available_cpus())
    workers = min(workers, max(1, len(tasks)))
    todo = iter(tasks)
    context = multiprocessing.get_context("spawn")
    fruitless = 0  # pools in a row that died before finishing a file
    while True:
        pending: dict[Future, Task] = {}
        lost: list[Task] = []
        finished = 0
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_local_init, initargs=(options, threads))
        completed = False
        try:
            _refill(pool, pending, todo, 2 * workers)
            while pending and not lost:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        row = future.result()
                    except BrokenProcessPool:
                        lost.append(task)
                        continue
                    finished += 1
                    yield row
                if not lost:
                    _refill(pool, pending, todo, 2 * workers)
            completed = True
        finally:
            if completed:
                pool.shutdown(wait=True)
            else:  # stopped (Ctrl-C, an error): do not wait for the files in flight, a clip may take minutes
                _terminate(pool)
        if not lost:
            return
        fruitless = 0 if finished else fruitless + 1
        if fruitless >= 3:
            raise EngineError("the worker processes keep dying before finishing a file (out of memory?); "
                              "try fewer --workers or a smaller --max-side.")
        # A process died (killed for memory?) with these tasks in flight: they are
        # reported failed, the pool is started afresh and the batch goes on.
        for task in [*lost, *pending.values()]:
            yield failed_row(task, options, "a worker process died while this file was in flight (out of "
                                            "memory?); rerun with --retry-failed to try it again")


def _refill(pool: ProcessPoolExecutor, pending: dict[Future, Task], todo: Iterator[Task], limit: int) -> None:
    """Queue tasks up to ``limit``. Worker processes start here, on demand; they start with
    Ctrl-C ignored (an ignored signal stays ignored across exec), so that a Ctrl-C reaches
    this process only, which then stops them, instead of tracebacks from every worker."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
    try:
        while len(pending) < limit:
            task = next(todo, None)
            if task is None:
                return
            pending[pool.submit(_local_task, task)] = task
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _terminate(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
    stop = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if stop is not None:
        stop()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def failed_row(task: Task, options: Options, error: str) -> dict:
    return {**asdict(task), "status": "failed", "error": error, "options": options.key(), "seconds": 0.0,
            "backend": None}


# -- Ray ------------------------------------------------------------------------------------------
class RayWorker:
    """A Ray Data actor: one model, rows in (task JSON), manifest rows out (JSON)."""

    def __init__(self, options: dict, threads: int) -> None:
        self.worker, self.error = None, None
        try:
            self.worker = Worker(Options(**options), threads)
        except Exception as exc:  # told to the driver, which stops the batch with this message
            self.error = f"a Ray worker on {socket.gethostname()} could not load the model: {exc}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.worker is None:
            rows = [{"abort": self.error}] * len(batch["task"])
        else:
            rows = [self.worker(json.loads(text)) for text in batch["task"]]
        return {"row": np.array([json.dumps(row) for row in rows], dtype=object)}


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its data extra has no ray.data)
    except ImportError as exc:
        raise EngineError(f"--engine ray needs Ray Data, which is not installed ({exc}). "
                          f"Install it with: {RAY_INSTALL}  (or: pip install \"ray[data]\")") from None
    return ray


def run_ray(options: Options, tasks: list[Task], workers: int | None = None, threads: int | None = None,
            address: str | None = None) -> Iterator[dict]:
    """Ray Data over the task list: one block per task (up to 10,000 blocks), batches of
    one, a fixed pool of actors with ``threads`` CPUs each; rows stream back in order
    of completion and nothing is materialised."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        env = forwarded_environment()
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, logging_level=logging.WARNING,
                     configure_logging=True, include_dashboard=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a Ray cluster"
            raise EngineError(f"could not connect to {where}: {exc}. Is it running (`ray status`)? If it uses "
                              "token authentication, set RAY_AUTH_MODE=token here, with its token in "
                              "~/.ray/auth_token or RAY_AUTH_TOKEN.") from None
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its progress notes would break the bar
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the batch has its own bar
        context.print_on_execution_start = False
        workers, threads = ray_workers(ray, workers, threads, len(tasks))
        items = [{"task": json.dumps(asdict(task))} for task in tasks]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 10_000)))
        ds = ds.map_batches(RayWorker, fn_constructor_kwargs={"options": asdict(options), "threads": threads},
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)
        yield from _ray_rows(ds)
    finally:
        if started:
            ray.shutdown()


def ray_workers(ray, workers: int | None, threads: int | None, tasks: int) -> tuple[int, int]:
    """Actors and CPUs per actor that this cluster can hold: an actor asking for more
    CPUs than any node has, or more actors than fit, would wait for ever."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    biggest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0)
    if threads and threads > biggest:
        raise EngineError(f"--threads {threads} asks each Ray worker for {threads} CPUs, but the largest node "
                          f"of this cluster has {biggest}.")
    workers, threads = split_cpus(workers, threads, cpus)
    threads = max(1, min(threads, biggest))  # CPUs split among few workers: no more than a node has
    fit = max(1, cpus // threads)
    if workers > fit:
        log.warning("animegan batch: %d workers x %d CPUs do not fit in the cluster's %d CPUs; using %d",
                    workers, threads, cpus, fit)
        workers = fit
    return min(workers, max(1, tasks)), threads


def _ray_rows(ds) -> Iterable[dict]:
    try:
        for item in ds.iter_rows():
            row = json.loads(item["row"])
            if "abort" in row:
                raise EngineError(row["abort"])
            yield row
    except EngineError:
        raise
    except Exception as exc:  # a lost node, an actor that died: no stack trace for that
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise EngineError(f"Ray stopped the batch: {lines[-1] if lines else type(exc).__name__}") from None
