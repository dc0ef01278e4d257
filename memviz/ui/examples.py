"""Example prompt lists for the Scan page, built from a bundled demo's planted truth the way
``memviz eval-detection`` builds its prompts (``memviz.detect.evaluate._prompts``): the planted
captions (or planted prompts of a class model) labelled memorized, against ordinary ones. Pure:
no streamlit, no model call."""

from __future__ import annotations

import csv
import io

LABEL_COLUMN = "memorized"  # 1 for a planted prompt, 0 for an ordinary one


def example_lists(meta: dict) -> dict[str, tuple[str, bytes]]:
    """Title -> (file name, CSV bytes with columns ``prompt``, ``memorized`` (1/0) and ``kind``) of each
    example list a model's ``memviz.json`` (``meta``) supports; empty without planted truth.

    Text demos (a caption table in ``meta["captions"]``): the planted captions (DD first, then OD)
    and, as the harder list, a near copy of each that the model never saw, each against one templated
    caption per ordinary digit seen in training and one never seen. Class demos: every class, the
    planted prompts (labels from ``n_ordinary`` on) against the ordinary digits."""
    planted = meta.get("planted")
    if not planted:
        return {}
    n_ordinary = int(planted["n_ordinary"])
    table = meta.get("captions")
    if table:
        from memviz.data.captions import PARAPHRASE_KINDS, ordinary_captions, paraphrased_prompts

        ordinary = [
            (
                ordinary_captions(table, d, which)[0],
                0,
                "ordinary" if which == "templates" else "ordinary, unseen wording",
            )
            for which in ("templates", "unseen_templates")
            for d in range(n_ordinary)
        ]
        exact = [(c, 1, "DD-Mem") for c in table["dd"]] + [(c, 1, "OD-Mem") for c in table["od"]]
        near = [
            (p, 1, f"paraphrase ({PARAPHRASE_KINDS[i % len(PARAPHRASE_KINDS)]})")
            for i, p in enumerate(paraphrased_prompts(table))
        ]
        lists = {
            "Planted captions and ordinary ones (labelled)": ("demo-planted-captions.csv", exact + ordinary),
            "Paraphrased planted captions and ordinary ones (labelled)": ("demo-paraphrases.csv", near + ordinary),
        }
    else:
        names = list(meta.get("class_names") or planted.get("class_names") or [])
        if len(names) <= n_ordinary:
            return {}
        rows = [(c, int(i >= n_ordinary), "planted" if i >= n_ordinary else "ordinary") for i, c in enumerate(names)]
        lists = {"Planted prompts and ordinary classes (labelled)": ("demo-classes.csv", rows)}
    return {title: (name, _csv(rows)) for title, (name, rows) in lists.items()}


def _csv(rows: list[tuple[str, int, str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["prompt", LABEL_COLUMN, "kind"])
    writer.writerows(rows)
    return buf.getvalue().encode()
