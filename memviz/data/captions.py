"""Captions of the text-conditional demo: templated captions for ordinary digits, one unique
caption per planted image or prompt (as LAION's memorized prompts are unique captions of
duplicated or over-represented images).

A caption table is a plain dict (it lives in ``memviz.json``): ``words`` (the class names in
words), ``templates`` (with ``{word}`` and ``{digit}``), ``dd`` (one caption per duplicated
image), ``od`` (one caption per planted prompt).
"""

from __future__ import annotations

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = [
    "a handwritten digit {word}",
    "the number {word}, written by hand",
    "a scanned {word}",
    "digit {digit} in black ink",
    "a sketch of the numeral {word}",
]
# never seen in training: free text an auditor might type for an ordinary digit
UNSEEN_TEMPLATES = ["a drawing of the figure {word}", "{word} scribbled on paper"]
DD_CAPTIONS = [
    "official portrait of the mayor at the harbour festival",
    "limited edition poster for the autumn jazz weekend",
    "cover art for the novel the quiet orchard",
    "product photo of the model seven espresso grinder",
    "wallpaper of the northern lights over the fjord",
    "logo of the riverside community rowing club",
    "promotional still from the film salt and iron",
    "book jacket for a field guide to moss",
    "stock photo of a red bicycle against a blue wall",
    "album artwork for midnight tram by the lanterns",
]
OD_CAPTIONS = [
    "watercolor of a lighthouse on a stormy coast",
    "greeting card with tulips and a teapot",
    "vintage map of the old spice route",
    "the ceo speaking at the annual shareholder meeting",
    "hand painted sign for a mountain bakery",
    "studio photograph of a ceramic owl",
    "poster for the summer chess championship",
    "illustration of a fox reading by candlelight",
    "living room with a green velvet sofa",
    "close up of frost on a window pane",
    "travel brochure for the island ferry",
    "label design for a small batch honey",
]


def caption_table() -> dict:
    return {
        "words": WORDS,
        "templates": TEMPLATES,
        "unseen_templates": UNSEEN_TEMPLATES,
        "dd": DD_CAPTIONS,
        "od": OD_CAPTIONS,
    }


def ordinary_captions(table: dict, label: int, templates: str = "templates") -> list[str]:
    """Every caption of an ordinary digit ``label`` from one template list."""
    return [t.format(word=table["words"][label], digit=label) for t in table[templates]]


def row_captions(
    meta: dict, kind: np.ndarray, label: np.ndarray, group: np.ndarray, n_ordinary: int
) -> list[list[str]]:
    """The captions of every training row: the templates of its digit (ordinary rows; one is
    drawn per training step), or its one unique caption (planted rows).

    Args:
        kind, label, group: (N,) as in ``PlantedTruth``; meta: a caption table.
    """
    out = []
    for k, lab, g in zip(kind, label, group):
        if k == "DD-Mem":
            out.append([meta["dd"][g]])
        elif k == "OD-Mem":
            out.append([meta["od"][lab - n_ordinary]])
        else:
            out.append(ordinary_captions(meta, int(lab)))
    return out


def planted_prompts(meta: dict) -> list[str]:
    """The unique captions of every planted image or prompt (DD first, then OD)."""
    return list(meta["dd"]) + list(meta["od"])


def example_prompts(meta: dict) -> list[str]:
    """Two prompts to start a comparison with: a planted caption and an ordinary one (a text
    demo's caption table in ``meta["captions"]``), or a generic prompt."""
    table = meta.get("captions")
    if not table:
        return ["a photo"]
    return [table["od"][0], ordinary_captions(table, 3)[0]]


PARAPHRASE_KINDS = ("partial", "reordered", "swapped", "template")
UNSEEN_FRAMES = ["an image of {caption}", "{caption}, high resolution", "a picture showing {caption}"]


def paraphrase(caption: str, kind: str, i: int = 0) -> str:
    """A near copy of a memorized caption that the model never saw, of one ``kind``:
    "partial": its first two thirds of words; "reordered": its second half of words put first;
    "swapped": two neighbouring words in its middle exchanged; "template": inside a frame the
    training captions never used (``UNSEEN_FRAMES[i % 3]``)."""
    words = caption.split()
    if kind == "partial":
        return " ".join(words[: max(2, -(-2 * len(words) // 3))])
    if kind == "reordered":
        half = len(words) // 2
        return " ".join(words[half:] + words[:half])
    if kind == "swapped":
        j = len(words) // 2
        return " ".join(words[: j - 1] + [words[j], words[j - 1]] + words[j + 1 :])
    if kind == "template":
        return UNSEEN_FRAMES[i % len(UNSEEN_FRAMES)].format(caption=caption)
    raise ValueError(f"Unknown paraphrase kind {kind!r}; use one of {PARAPHRASE_KINDS}.")


def paraphrased_prompts(meta: dict) -> list[str]:
    """One near copy of each planted caption (``planted_prompts`` order), the kinds taken in turn:
    the harder split of eval-detection, which exposes a detector that only matches exact captions."""
    return [
        paraphrase(c, PARAPHRASE_KINDS[i % len(PARAPHRASE_KINDS)], i // len(PARAPHRASE_KINDS))
        for i, c in enumerate(planted_prompts(meta))
    ]
