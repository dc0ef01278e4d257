"""memviz: has this diffusion model memorized its training data, where, and why?

Run with ``streamlit run app.py`` (or ``memviz app``); it opens on the bundled demo (demo-mnist), offline.
The pages live in ``pages/``; their navigation is ``memviz.ui.nav``.
"""

from memviz.ui.nav import run_app

run_app()
