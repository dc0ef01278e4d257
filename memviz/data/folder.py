"""A user's own data: an image folder (imagefolder convention) or an ``.npz`` file."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from memviz.data.base import ImageDataset, check_images, from_uint8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def load_image_folder(path: str | Path, resolution: int | None = None, channels: int | None = None) -> ImageDataset:
    """Images in a folder; captions from ``metadata.jsonl`` (``{"file_name": ..., "text": ...}``).

    Sub-folders become class labels (imagefolder convention) when there is no metadata.
    All images must share one size unless ``resolution`` is given (they are then resized).
    Before any pixel is decoded, the images' declared sizes (their headers) are checked against
    ``MEMVIZ_MAX_BYTES``, as float32 tensors.
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"No image folder at {root}; give a folder of image files.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    mode = {1: "L", 3: "RGB", None: None}[channels]
    _check_declared_sizes(root, files, resolution, channels)
    arrays = []
    for f in files:
        with _opened(f) as im:
            im = im.convert(mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB"))
            if resolution:
                im = im.resize((resolution, resolution), Image.BICUBIC)
            arrays.append(np.asarray(im))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"Images in {root} have different sizes {sorted(shapes)[:3]}; pass resolution= to resize.")
    pix = np.stack(arrays)
    pix = pix[:, None] if pix.ndim == 3 else pix.transpose(0, 3, 1, 2)
    captions, labels, names = _annotations(root, files)
    return ImageDataset(
        root.name,
        from_uint8(pix),
        labels=labels,
        captions=captions,
        class_names=names,
        meta={"source": str(root), "files": [str(f.relative_to(root)) for f in files]},
    )


def _check_declared_sizes(root: Path, files: list[Path], resolution: int | None, channels: int | None) -> None:
    """Refuse the folder if its images, as float32 tensors, would exceed ``MEMVIZ_MAX_BYTES``, from the
    image headers alone (``Image.open`` is lazy) and before the first one is decoded."""
    from memviz.io.guard import check_bytes, max_bytes

    limit, total = max_bytes(), 0
    for i, f in enumerate(files, 1):
        with _opened(f) as im:
            w, h = (resolution, resolution) if resolution else im.size
            c = channels or (1 if im.mode in ("L", "1", "I;16") else 3)
        total += 2 * w * h * c * 4  # the decoded pixels and their float32 copy
        if total > limit:  # refuse now, naming what the whole folder would take at this rate
            check_bytes(total * len(files) // i, f"The {len(files):,} images in {root}")


@contextmanager
def _opened(f: Path):
    """``PIL.Image.open(f)`` (lazy: the header only); anything unreadable, a decompression bomb
    included, is one sentence."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            yield im
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ValueError(f"{f} is not a readable image ({exc.__class__.__name__}); remove or fix it.") from None


def _annotations(root: Path, files: list[Path]):
    from memviz.io.guard import check_file

    meta = root / "metadata.jsonl"
    if meta.exists():
        check_file(meta)
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
    import torch

    from memviz.io.files import load_npz as read
    from memviz.io.guard import check_bytes, npz_members

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No file at {path}; give an .npz with an 'images' array.")
    members = npz_members(path)  # declared shapes and dtypes, before any array is read
    if "images" not in members:
        raise ValueError(f"{path} has no 'images' array (it has {sorted(members)}).")
    dtype, shape = members["images"]
    if len(shape) not in (3, 4):
        raise ValueError(f"'images' in {path} must have shape (N, C, H, W) or (N, H, W); got {shape}.")
    if shape[0] == 0:
        raise ValueError(f"'images' in {path} is empty; give at least one image.")
    if dtype.kind not in "uif":
        raise ValueError(f"'images' in {path} must be uint8 or float; got {dtype}.")
    check_bytes(int(np.prod(shape, dtype=object)) * 4, f"'images' in {path} as float32")
    for name in ("labels", "captions", "lid"):
        if name in members and members[name][1][:1] != shape[:1]:
            raise ValueError(f"'{name}' in {path} has {members[name][1][:1] or 'no'} rows but 'images' has {shape[0]}.")
    arrays = read(path, checked=True)
    x = arrays["images"]
    if x.ndim == 3:
        x = x[:, None]
    images = from_uint8(x) if x.dtype == np.uint8 else torch.as_tensor(x, dtype=torch.float32)
    check_images(images, what=f"'images' in {path}")
    caps = arrays.get("captions")
    return ImageDataset(
        path.stem,
        images,
        labels=arrays.get("labels"),
        lid=arrays.get("lid"),
        captions=None if caps is None else [str(c) for c in caps],
        meta={"source": str(path)},
    )
