"""Training: the seeded, resumable training loop of a class- or text-conditional diffusers UNet
(``loop``) and the recipes of the bundled demos (``recipes``: data, planted truth, configuration),
so that ``memviz train demo-mnist`` re-trains them exactly.

May import ``memviz.io``, ``memviz.data`` and ``memviz.model``; only the CLI and tests import it.
"""
