"""The Study: one model, its training data and one on-disk store, handing out every artifact
(FLIPD grids, LID*, verdicts, neighbours, the map, spectra) computed once and read by the CLI, the
app and the evaluation alike (``core``), and what the app's panels show as library calls on it
(``views``: one training row side by side, a comparison of prompts).

May import every layer below it (io, data, model, runner, neighbors, lid, hessian, detect);
figures, the UI and the CLI import it.
"""

from memviz.study.core import Study, StudySpec, StudyTask, analysed_rows, open_study

__all__ = ["Study", "StudySpec", "StudyTask", "analysed_rows", "open_study"]
