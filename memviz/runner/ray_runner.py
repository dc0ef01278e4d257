"""Dataset-wide passes on Ray (``pip install "memviz[ray]"``): Ray Data's ``map_batches`` with
callable-class actors, each building the pass's batch function once (the model loaded once per
worker), feeding the same ``memviz.runner.local.run`` that stores every finished batch in the Study's
store as it arrives.

Why it is shaped so (measured with Ray 2.60 on two cores, see issue 17):

- without an address, a private local Ray is started (``address="local"``: it never joins a
  cluster it was not pointed at) and stopped at the end;
- an address is probed with a plain TCP connection first: ``ray.init`` at an unreachable
  address retries for about 12 minutes;
- actors take a fraction of a CPU (two whole-CPU actors on two cores starve the rest of the
  pipeline) and one torch thread each (4 to 6 times faster than two under contention);
- a killed actor is restarted by Ray Data and its batch retried (its default); nothing here
  sets ``max_errored_blocks``, which would drop rows instead;
- resume is by content key in memviz's own store (``RowStore``), not Ray's checkpointing: a
  rerun after a killed driver computes only the batches that were not stored.
"""

from __future__ import annotations

import os
import socket
from typing import Iterable, Iterator
from urllib.parse import urlparse

import numpy as np

from memviz.runner.local import BatchFn, Task


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


class _Worker:
    """A Ray Data actor: builds the batch function once, then maps batch numbers to their rows."""

    def __init__(self, task: Task, batches: list[np.ndarray]):
        import torch

        torch.set_num_threads(1)
        self.fn, self.batches = task.build(), batches

    def __call__(self, items: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, parts = [], []
        for k in items["batch"]:
            batch = self.batches[int(k)]
            ids.append(batch)
            parts.append(self.fn(batch))
        return {"_ids": np.concatenate(ids), **{c: np.concatenate([p[c] for p in parts]) for c in parts[0]}}


class RayRunner:
    """``memviz.runner.local.Runner`` on Ray. Use as a context manager (``with RayRunner() as r``), or call
    ``start`` and ``stop``.

    Args:
        address: an existing cluster; None starts a private one on this machine for the run.
        workers: actors (each loads the model once); gpus_per_worker: Ray's num_gpus per actor.
    """

    def __init__(self, address: str | None = None, workers: int = 2, gpus_per_worker: float = 0.0):
        if workers < 1:
            raise ValueError(f"--workers must be at least 1; got {workers}.")
        self.address, self.workers, self.gpus = address, workers, float(gpus_per_worker)
        self._owned = False

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
        ray = import_ray()
        self.start()
        batches = [np.asarray(b) for b in batches]
        cpus = ray.cluster_resources().get("CPU", 1.0)
        per_worker = max(0.1, min(1.0, round((cpus - 0.5) / self.workers, 2)))  # leave room for the pipeline
        ds = ray.data.from_items([{"batch": k} for k in range(len(batches))], override_num_blocks=len(batches))
        out = ds.map_batches(
            _Worker,
            fn_constructor_args=(task, batches),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(batches))),
            num_cpus=per_worker,
            num_gpus=self.gpus or None,
        )
        for block in out.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            ids = block.pop("_ids")
            yield ids, {c: np.asarray(v) for c, v in block.items()}
