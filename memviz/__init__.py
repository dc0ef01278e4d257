"""memviz: find, measure and explain memorization in diffusion models.

The library is pure computation (torch, numpy, diffusers); the Streamlit app in
``app.py`` and ``pages/`` is a thin layer over it, and only ``memviz.ui`` imports
streamlit.

Example:
    >>> import memviz
    >>> study = memviz.open_study("demo-mnist")     # a bundled demo, or a local diffusers folder
    >>> study.table(t0=0.05)                        # every analysed training row's FLIPD, LID*, verdict, map
    >>> out = study.model.sample(4, cond="memorized-00", steps=25, seed=0)
    >>> out.images.shape
    torch.Size([4, 1, 16, 16])
"""

__version__ = "0.1.0"
__all__ = ["Study", "open_study"]


def __getattr__(name: str):
    """``memviz.open_study`` and ``memviz.Study`` without importing torch on ``import memviz``."""
    if name in __all__:
        from memviz.study import core as study

        return getattr(study, name)
    raise AttributeError(f"module 'memviz' has no attribute {name!r}")
