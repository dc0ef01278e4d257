"""The command line, ``memviz`` (``python3 -m memviz`` alike): one subcommand per job (train, sample,
info, compute, detectors, eval-detection, mitigate, app), each a thin call into the library; bad
input is one sentence and exit code 2, never a traceback.

The top layer beside ``memviz.ui``: it may import everything else, and nothing imports it.
"""

from memviz.cli.commands import main

__all__ = ["main"]
