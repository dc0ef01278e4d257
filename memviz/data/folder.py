"""A user's own data: an image folder (imagefolder convention) or an ``.npz`` file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from memviz.data.base import ImageDataset, check_images, from_uint8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def load_image_folder(path: str | Path, resolution: int | None = None, channels: int | None = None) -> ImageDataset:
    """Images in a folder; captions from ``metadata.jsonl`` (``{"file_name": ..., "text": ...}``).

    Sub-folders become class labels (imagefolder convention) when there is no metadata.
    All images must share one size unless ``resolution`` is given (they are then resized).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"No image folder at {root}; give a folder of image files.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    mode = {1: "L", 3: "RGB", None: None}[channels]
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB"))
                if resolution:
                    im = im.resize((resolution, resolution), Image.BICUBIC)
                arrays.append(np.asarray(im))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{f} is not a readable image ({exc.__class__.__name__}); remove or fix it.") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"Images in {root} have different sizes {sorted(shapes)[:3]}; pass resolution= to resize.")
    pix = np.stack(arrays)
    pix = pix[:, None] if pix.ndim == 3 else pix.transpose(0, 3, 1, 2)
    captions, labels, names = _annotations(root, files)
    return ImageDataset(root.name, from_uint8(pix), labels=labels, captions=captions, class_names=names,
                        meta={"source": str(root), "files": [str(f.relative_to(root)) for f in files]})


def _annotations(root: Path, files: list[Path]):
    meta = root / "metadata.jsonl"
    if meta.exists():
        text = {}
        for n, line in enumerate(meta.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    text[row["file_name"]] = str(row.get("text", row.get("caption", "")))
                except (json.JSONDecodeError, KeyError):
                    raise ValueError(f"{meta} line {n} is not a JSON object with a file_name.") from None
        return [text.get(str(f.relative_to(root)), "") for f in files], None, None
    classes = sorted({f.parent.name for f in files if f.parent != root})
    if not classes:
        return None, None, None
    labels = np.array([classes.index(f.parent.name) if f.parent != root else -1 for f in files])
    return None, labels, classes


def load_npz(path: str | Path) -> ImageDataset:
    """An ``.npz`` with ``images`` (N, C, H, W) or (N, H, W) — uint8 in [0, 255] or float in
    [-1, 1] — and optional ``labels`` (N,), ``captions`` (N,) and ``lid`` (N,)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No file at {path}; give an .npz with an 'images' array.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable .npz ({exc.__class__.__name__}).") from None
    if "images" not in arrays:
        raise ValueError(f"{path} has no 'images' array (it has {sorted(arrays)}).")
    x = arrays["images"]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"'images' in {path} must have shape (N, C, H, W) or (N, H, W); got {x.shape}.")
    images = from_uint8(x) if x.dtype == np.uint8 else __import__("torch").as_tensor(x, dtype=__import__("torch").float32)
    check_images(images, what=f"'images' in {path}")
    caps = arrays.get("captions")
    return ImageDataset(path.stem, images, labels=arrays.get("labels"), lid=arrays.get("lid"),
                        captions=None if caps is None else [str(c) for c in caps], meta={"source": str(path)})
