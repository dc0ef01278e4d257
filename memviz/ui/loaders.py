"""Cached loaders: models once per server (``st.cache_resource``), data once per path."""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from memviz.data import ImageDataset, training_data
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
log = logging.getLogger("memviz.ui")
if os.environ.get("MEMVIZ_LOG") and not log.handlers:  # one line per expensive load, for tests and operators
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.INFO)
BUNDLED = {"demo-mnist": ASSETS / "demo-mnist", "demo-mnist-text": ASSETS / "demo-mnist-text",
           "demo-toy": ASSETS / "demo-toy"}


@dataclass
class Workspace:
    """A loaded model with its training data and the neighbour index over it."""

    path: str
    data_path: str | None
    model: DiffusionModel
    train: ImageDataset | None
    test: ImageDataset | None
    reference: NeighborIndex | None
    reference_source: np.ndarray | None  # base index of each reference row (deduplicated training images)
    error: str | None = None


@st.cache_resource(show_spinner="Loading the model and its training data…")
def load_workspace(path: str, data_path: str | None = None) -> Workspace:
    """Load once per server; raises ValueError with a clear sentence on bad input.

    data_path: an image folder or ``.npz`` to use as the training data instead of the model's own
    (its images must match the model's shape, at the model's resolution).
    """
    log.info("memviz: loading model %s", path)
    model = DiffusionModel.from_pretrained(path)
    if data_path:
        train, test = load_user_data(data_path, model), None
    else:
        try:
            train, test = training_data(model.meta)
        except ValueError as exc:
            return Workspace(path, data_path, model, None, None, None, None, error=str(exc))
    unique = train.deduplicated()  # duplicates would hide each other in the calibrated l2
    source = unique.source_index if unique.source_index is not None else np.arange(len(unique))
    return Workspace(path, data_path, model, train, test, NeighborIndex(unique.images), source)


def load_user_data(data_path: str, model: DiffusionModel) -> ImageDataset:
    """An image folder or ``.npz``, checked against the model: one sentence if they do not fit."""
    from memviz.data.folder import load_image_folder, load_npz

    p = Path(data_path).expanduser()
    c, h, w = model.pixel_shape  # latent models: the VAE's image size (8 x the latents' for Stable Diffusion)
    data = load_npz(p) if p.suffix == ".npz" else load_image_folder(p, resolution=h, channels=c)
    if tuple(data.shape) != model.pixel_shape:
        raise ValueError(f"The data's images are {tuple(data.shape)} (C, H, W) but the model expects "
                         f"{model.pixel_shape}; give images of that shape.")
    return data


def workspace_picker() -> Workspace | None:
    """Sidebar: a bundled demo or a local model folder, and optionally other training data.
    Errors show in the page, never as a traceback."""
    options = [name for name, p in BUNDLED.items() if p.exists()] + ["Your own model folder…"]
    wanted = st.query_params.get("model")
    own = wanted is not None and wanted not in options
    choice = st.sidebar.selectbox("Workspace", options, key="workspace",
                                  index=len(options) - 1 if own else options.index(wanted) if wanted else 0)
    path = str(BUNDLED[choice]) if choice in BUNDLED else st.sidebar.text_input(
        "Local diffusers folder", key="model_path", placeholder="/path/to/model", value=wanted if own else "")
    model_key = choice if choice in BUNDLED else path
    if model_key and st.query_params.get("model") != model_key:
        st.query_params["model"] = model_key  # the workspace travels with a shared link
    data_path = st.sidebar.text_input("Training data (optional)", key="data_path",
                                      placeholder="image folder or .npz; empty: the model's own",
                                      value=st.query_params.get("data", ""),
                                      help="An image folder (class sub-folders or metadata.jsonl) or an .npz.")
    if (data_path.strip() or None) != st.query_params.get("data"):  # the data travel with the link, and across pages
        if data_path.strip():
            st.query_params["data"] = data_path.strip()
        else:
            st.query_params.pop("data", None)
    if not path:
        st.info("Enter the path of a local diffusers model folder (model_index.json, or unet/ and scheduler/).")
        return None
    try:
        ws = load_workspace(path, data_path.strip() or None)
    except ValueError as exc:
        st.error(str(exc))
        return None
    if ws.error:
        st.warning(ws.error)
    return ws


def to_display(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] data to [0, 1] for display."""
    return ((images + 1) / 2).clamp(0, 1)


@st.cache_resource
def _browse_store() -> tuple[dict, threading.Lock]:
    """Browse tables shared by every session of this server, and the lock that computes each once."""
    return {}, threading.Lock()


def load_browse(path: str, size: int, t0: float, data_path: str | None = None):
    """The browse table of a workspace's training images (every planted one, then a seeded random
    sample of ordinary ones up to ``size``), computed once per server with a progress bar in the
    page that asks first (other sessions wait for it); its artifacts are cached on disk too."""
    store, lock = _browse_store()
    key = (path, size, t0, data_path)
    if key not in store:
        if not lock.acquire(blocking=False):
            with st.spinner("Another session is computing the dataset-wide pass; waiting for it…"):
                lock.acquire()
        try:
            if key not in store:
                bar = st.progress(0.0, "Dataset-wide pass: FLIPD curves, LID*, neighbours and the map (cached on disk)…")
                store[key] = _browse(path, size, t0, data_path, lambda f, what: bar.progress(min(f, 1.0), what))
                bar.empty()
        finally:
            lock.release()
    return store[key]


def _browse(path: str, size: int, t0: float, data_path: str | None, on_progress):
    from memviz.analysis import browse

    ws = load_workspace(path, data_path)
    first = ws.train.first_rows()                            # each distinct training image once
    kind = np.asarray(ws.train.meta.get("kind", np.full(len(ws.train), "none")))[first]
    ordinary = np.random.default_rng(0).permutation(first[kind == "none"])  # a seeded sample of every class
    rows = np.sort(np.r_[first[kind != "none"], ordinary][:size])
    held = ws.test.subset(np.arange(min(len(ws.test), 200))) if ws.test is not None else None
    return browse(ws.model, ws.train.subset(rows), t0=t0, reference=held, stored=(ws.train, rows),
                  on_progress=on_progress)


@st.cache_data(show_spinner="Generating and scoring…", max_entries=64)
def compare_prompts(path: str, prompts: tuple, n: int, steps: int, guidance: float, seed: int,
                    data_path: str | None = None):
    """Every prompt's generations, evidence and detector scores (``memviz.analysis.compare_prompts``),
    cached per settings so that a rerun is instant."""
    from memviz.analysis import compare_prompts as compare

    ws = load_workspace(path, data_path)
    return compare(ws.model, ws.reference, list(prompts), n=n, steps=steps, guidance_scale=guidance, seed=seed)
