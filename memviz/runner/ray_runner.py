"""Dataset-wide passes on Ray (``pip install "memviz[ray]"``): one pool of actors for a whole run
(``RayRunner``, started at the first pass and kept until ``stop``), each building a pass's batch function
once and keeping the Study it opens, so a worker loads the model once for every pass of a ``compute``
or ``scan``; finished batches feed the same ``memviz.runner.local.run`` that stores each in the Study's
store as it arrives. Workers read the data themselves from where it lies (a streamed dataset's
Parquet or WebDataset shards: ``memviz.data.stream``); only batch ids and result rows travel.
Ray Data reads what is read whole: on a cluster larger than this machine, a streamed dataset's content
pass (``open_study(runner=RayRunner())`` runs it on ``read_parquet``, ``read_webdataset`` or
``read_binary_files``, hashing each block where it is read; ``memviz.data.stream.ray_data_pays``).

Why the model passes are not Ray Data's ``map_batches``, as issue 17 had it: its callable-class actors
live for one Dataset execution, so each pass (unconditional, conditional and held-out FLIPD, spectra, a
scan's detectors) started a new pool and reloaded the model: 2x slower than the local engine on two
cores. A plain actor pool (``ray.util.ActorPool``) is what keeps them.

Why it is shaped so (measured with Ray 2.60 on two cores, see issue 17):

- without an address, a private local Ray is started (``address="local"``: it never joins a
  cluster it was not pointed at) and stopped at the end;
- an address is probed with a plain TCP connection first: ``ray.init`` at an unreachable
  address retries for about 12 minutes;
- actors take a fraction of a CPU (two whole-CPU actors on two cores starve the rest of the
  pipeline) and one torch thread each (4 to 6 times faster than two under contention);
- a killed actor is restarted and its batch retried (``max_restarts=-1``, ``max_task_retries=-1``):
  no row is lost;
- resume is by content key in memviz's own store (``RowStore``), not Ray's checkpointing: a
  rerun after a killed driver computes only the batches that were not stored.
"""

from __future__ import annotations

import os
import socket
from typing import Iterable, Iterator
from urllib.parse import urlparse

import numpy as np

from memviz.runner.local import BatchFn, Task, keep_opened


def import_ray():
    """Ray, or one sentence on how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError('--engine ray needs Ray: pip install "memviz[ray]" (or ray[data]).') from None
    return ray


def probe(address: str, timeout: float = 5.0) -> None:
    """Refuse, in seconds, an address where nothing listens (``host:port`` or ``ray://host:port``)."""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port or (10001 if parsed.scheme == "ray" and "://" in address else 6379)
    if not host:
        raise ValueError(f"{address!r} is not a Ray address; give host:port or ray://host:port.")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(
            f"No Ray cluster answers at {address} ({exc.__class__.__name__}); start one with "
            "'ray start --head' there, or leave out --address to run on this machine."
        ) from None


class PassWorker:
    """A Ray actor kept for the whole run: builds each pass's batch function once (its Task, keyed by
    content) and keeps the Studies it opens, so the model is loaded once per worker for every pass."""

    def __init__(self):
        import torch

        torch.set_num_threads(1)
        self.opened, self.fns, self.built = keep_opened(), {}, 0

    def run(self, key: str, task: Task, batch: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if key not in self.fns:
            self.fns[key], self.built = task.build(), self.built + 1
        return batch, self.fns[key](batch)

    def info(self) -> dict:
        """{pid, studies opened, batch functions built} of this worker."""
        return {"pid": os.getpid(), "opened": len(self.opened), "built": self.built}


class RayRunner:
    """``memviz.runner.local.Runner`` on Ray. Use as a context manager (``with RayRunner() as r``), or call
    ``start`` and ``stop``.

    Args:
        address: an existing cluster; None starts a private one on this machine for the run.
        workers: actors (each loads the model once); gpus_per_worker: Ray's num_gpus per actor.
    """

    engine = "ray"  # open_study(runner=) also reads a streamed dataset's files with Ray Data

    def __init__(self, address: str | None = None, workers: int = 2, gpus_per_worker: float = 0.0):
        if workers < 1:
            raise ValueError(f"--workers must be at least 1; got {workers}.")
        self.address, self.workers, self.gpus = address, workers, float(gpus_per_worker)
        self._owned, self._actors, self.startup_s = False, [], 0.0

    def start(self) -> "RayRunner":
        ray = import_ray()
        if ray.is_initialized():
            return self
        if self.address:
            probe(self.address)
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        else:
            from memviz.io.cache import cache_dir

            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                runtime_env={
                    "env_vars": {
                        "MEMVIZ_CACHE": str(cache_dir()),
                        "OMP_NUM_THREADS": "1",
                        "HF_HUB_OFFLINE": "1",
                        "TRANSFORMERS_OFFLINE": "1",
                    }
                },
            )
        self._owned = True
        import logging

        ray.data.DataContext.get_current().enable_progress_bars = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)  # memviz reports progress itself
        return self

    def stop(self) -> None:
        for actor in self._actors:
            import_ray().kill(actor)
        self._actors = []
        if self._owned:
            import_ray().shutdown()
            self._owned = False

    def __enter__(self) -> "RayRunner":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def map(
        self, fn: BatchFn, batches: Iterable[np.ndarray], task: Task | None = None
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        if task is None:
            raise ValueError("This pass has no Task to rebuild it on a Ray worker; run it with the local engine.")
        from ray.util import ActorPool

        ray = import_ray()
        self.start()
        pool = ActorPool(self._pool())
        key, ref = fingerprint_task(task), ray.put(task)  # the Task travels once, not once per batch
        batches = [np.asarray(b) for b in batches]
        yield from pool.map_unordered(lambda actor, b: actor.run.remote(key, ref, b), batches)

    def _pool(self) -> list:
        """The run's actors, started at the first pass and kept until ``stop``; ``startup_s`` is their start."""
        if not self._actors:
            import time

            ray = import_ray()
            start = time.perf_counter()
            cpus = ray.cluster_resources().get("CPU", 1.0)
            per_worker = max(0.1, min(1.0, round((cpus - 0.5) / self.workers, 2)))  # room for the driver
            remote = ray.remote(num_cpus=per_worker, num_gpus=self.gpus or None, max_restarts=-1, max_task_retries=-1)
            self._actors = [remote(PassWorker).remote() for _ in range(self.workers)]
            ray.get([a.info.remote() for a in self._actors])  # started (a failed start raises here, once)
            self.startup_s = time.perf_counter() - start
        return self._actors

    def workers_info(self) -> list[dict]:
        """{pid, opened, built} of each live worker: one Study opened per worker for a whole run."""
        return import_ray().get([a.info.remote() for a in self._actors])


def fingerprint_task(task: Task) -> str:
    """A content key of a Task (equal recipes build equal batch functions)."""
    import hashlib
    import pickle

    return hashlib.sha256(pickle.dumps(task)).hexdigest()[:20]
