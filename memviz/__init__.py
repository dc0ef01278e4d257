"""memviz: find, measure and explain memorization in diffusion models.

The library is pure computation (torch, numpy, diffusers); the Streamlit app in
``app.py`` and ``pages/`` is a thin layer over it, and only ``memviz.ui`` imports
streamlit.

Example:
    >>> from memviz.models import DiffusionModel
    >>> model = DiffusionModel.from_pretrained("assets/models/demo-mnist")
    >>> out = model.sample(4, cond="memorized-00", steps=25, seed=0)
    >>> out.images.shape
    torch.Size([4, 1, 16, 16])
"""

__version__ = "0.1.0"
