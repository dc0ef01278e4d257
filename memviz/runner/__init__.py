"""One runner for every dataset-wide pass: a function from a batch of ids to a table, driven batch
by batch into a ``RowStore`` so that a rerun resumes (``local``: ``run``, ``LocalRunner``), or on
Ray Data actors that build the pass once per worker (``ray_runner``). Estimators never know which.

May import ``memviz.io`` only; the Study and the prompt-level detectors hand it their passes.
"""

from memviz.runner.local import BatchFn, LocalRunner, Task, run

__all__ = ["BatchFn", "LocalRunner", "Task", "run"]
