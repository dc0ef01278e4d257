"""Thin cached wrappers around a ``Study``: the model once per server (``st.cache_resource``), one
Study per (model, data, images analysed), and its dataset-wide pass computed once per server
with a progress bar. Every number comes from the Study.

Many sessions share one server: the model and each Study are shared read-only, and every
computation that calls the model runs under one server-wide lock (``heavy``), so ten sessions
picking at once queue instead of running ten passes side by side (memory stays that of one).
Model and data paths from the URL or the sidebar are opened only inside the allowed roots
(``memviz.io.guard.inside_roots``)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from memviz.io.guard import inside_roots
from memviz.model.adapter import DiffusionModel
from memviz.model.loading import bundled_models
from memviz.study.core import DEFAULT_N, Study, open_study

log = logging.getLogger("memviz.ui")
if os.environ.get("MEMVIZ_LOG") and not log.handlers:  # one line per expensive load, for tests and operators
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.INFO)
OWN = "Your own model folder…"


def allowed(path: str, what: str) -> str:
    """``path`` if it is a bundled demo's name or lies inside the allowed roots; else ValueError."""
    if what == "model" and path in bundled_models():
        return path
    inside_roots(path, what)
    return path


@st.cache_resource(show_spinner="Loading the model…")
def load_model(path: str) -> DiffusionModel:
    """A bundled demo's name or a local folder inside the allowed roots, loaded once per server;
    ValueError in one sentence."""
    allowed(path, "model")
    log.info("memviz: loading model %s", path)
    with heavy():  # lazy: the UNet is built on the first model call, so stored artifacts show seconds sooner
        return DiffusionModel.from_pretrained(path, lazy=True)


@st.cache_resource(show_spinner="Loading the training data…")
def load_study(path: str, data_path: str | None = None, n: int = DEFAULT_N, features: str | None = None) -> Study:
    """The Study of a model on its own training data or on ``data_path`` (an image folder or .npz
    inside the allowed roots, checked against the model's shape), analysing ``n`` training images;
    ``features``: a local image embedder's folder (inside the roots) for copies and the map, None: pixels."""
    if data_path is not None:
        allowed(data_path, "data path")
    if features is not None:
        allowed(features, "image embedder")
    model = load_model(path)
    with heavy():
        study = open_study(model, data_path, n=n, features=features)
    study.path = path
    return study


@st.cache_resource
def _server_state() -> tuple[set, threading.RLock]:
    """The studies whose dataset-wide pass is done on this server, and the one lock under which
    every model computation of every session runs."""
    return set(), threading.RLock()


@contextmanager
def heavy(waiting: str = "Another session is computing; waiting for it…") -> Iterator[None]:
    """Run the block under the server-wide lock (re-entrant), with a spinner while another session
    holds it. Everything that calls the model goes through here."""
    lock = _server_state()[1]
    if not lock.acquire(blocking=False):
        with st.spinner(waiting):
            lock.acquire()
    try:
        yield
    finally:
        lock.release()


def warm(model: DiffusionModel) -> None:
    """Build a lazily loaded UNet in the background, so that the first pick after the Overview does not
    wait for it; the Overview itself reads only stored artifacts. Reruns before it is built start
    another timer, which finds it built (the model's lock) and does nothing."""
    if not model.is_built:  # after a pause, so that the page's last messages go out first
        timer = threading.Timer(2.0, lambda: model.unet)
        timer.daemon = True
        timer.start()


def prepared(study: Study) -> Study:
    """``study`` with its dataset-wide artifacts computed (once per server; a progress bar in the page
    that asks first, a spinner in the others); the artifacts are stored on disk too."""
    done = _server_state()[0]
    key = (study.path, study.data_path, study.n, study.features)
    if key not in done:
        with heavy("Another session is computing the dataset-wide pass; waiting for it…"):
            if key not in done:
                bar = st.progress(
                    0.0, "Dataset-wide pass: FLIPD curves, LID*, neighbours and the map (stored on disk)…"
                )
                study.prepare(lambda f, what: bar.progress(min(f, 1.0), what))
                bar.empty()
                done.add(key)
    return study


def _linked_path(label: str, name: str, placeholder: str, help: str, key: str | None = None) -> str | None:
    """A sidebar path kept in the URL (``?name=``), so that it travels with a link and across pages;
    None when empty."""
    value = st.sidebar.text_input(
        label, key=key or name, placeholder=placeholder, value=st.query_params.get(name, ""), help=help
    )
    value = value.strip() or None
    if value != st.query_params.get(name):
        if value:
            st.query_params[name] = value
        else:
            st.query_params.pop(name, None)
    return value


def workspace_picker() -> Study | None:
    """Sidebar: a bundled demo or a local model folder, and optionally other training data; the
    Study of the default number of images. Errors show in the page, never as a traceback."""
    options = bundled_models() + [OWN]
    wanted = st.query_params.get("model")
    own = wanted is not None and wanted not in options
    choice = st.sidebar.selectbox(
        "Workspace", options, key="workspace", index=len(options) - 1 if own else options.index(wanted) if wanted else 0
    )
    path = (
        choice
        if choice != OWN
        else st.sidebar.text_input(
            "Local diffusers folder", key="model_path", placeholder="/path/to/model", value=wanted if own else ""
        )
    )
    if path and st.query_params.get("model") != path:
        st.query_params["model"] = path  # the workspace travels with a shared link
    data_path = _linked_path(
        "Training data (optional)",
        "data",
        "image folder or .npz; empty: the model's own",
        "An image folder (class sub-folders or metadata.jsonl) or an .npz.",
        key="data_path",
    )
    features = _linked_path(
        "Image features (optional)",
        "features",
        "embedder folder; empty: pixels",
        "The space copies and the map are judged in: pixels, or a local transformers vision model "
        "(CLIP, DINOv2, ViT, SigLIP) saved with safetensors. LID* stays in the model's space.",
    )
    if not path:
        st.info("Enter the path of a local diffusers model folder (model_index.json, or unet/ and scheduler/).")
        return None
    try:
        study = load_study(path, data_path, features=features)  # the roots are checked there, before any file opens
    except ValueError as exc:
        st.error(str(exc))
        return None
    if study.error:
        st.warning(study.error)
    return study


def sample_view(study: Study, row: int, t0: float, table=None):
    """``memviz.study.views.sample_view`` under the server-wide lock (a pick may compute a spectrum)."""
    from memviz.study.views import sample_view as view

    with heavy():
        return view(study, row, t0, table=table)


def map_table(study: Study, t0: float):
    """``Study.map_table``: every distinct training image with its map (computed once, stored; under the
    server-wide lock, as a first map of a large set fits UMAP)."""
    with heavy("Another session is computing; waiting for it…"), st.spinner("The map of every training image…"):
        return study.map_table(t0)


def study_of(study: Study, n: int) -> Study:
    """The same model and data, analysing ``n`` training images, prepared."""
    return prepared(load_study(study.path, study.data_path, n, study.features))


@st.cache_data(show_spinner="Generating and scoring…", max_entries=64)
def compare_prompts(
    path: str,
    prompts: tuple,
    n: int,
    steps: int,
    guidance: float,
    seed: int,
    data_path: str | None = None,
    features: str | None = None,
):
    """``memviz.study.views.compare_prompts``, cached per settings so that a rerun is instant."""
    from memviz.study.views import compare_prompts as compare

    study = load_study(path, data_path, features=features)
    with heavy():
        return compare(study, list(prompts), n=n, steps=steps, guidance_scale=guidance, seed=seed)


@st.cache_resource(max_entries=16)
def _lab_memo(path: str, data_path: str | None, n: int, steps: int, seed: int, gate: str, features=None) -> dict:
    """``run_lab``'s memo for these settings, shared by the page's lab run and its sweep (and by other
    prompt sets): each prompt's gate score and judged plain generation are computed once. Read and
    written under ``heavy()``."""
    return {}


def _on_study(
    fn,
    path: str,
    prompts: tuple,
    methods: tuple,
    n: int,
    steps: int,
    seed: int,
    gate: str,
    data_path: str | None,
    features: str | None = None,
):
    study = load_study(path, data_path, features=features)
    with heavy():
        return fn(
            study,
            list(prompts),
            list(methods),
            n=n,
            seed=seed,
            steps=steps,
            gate=gate,
            memo=_lab_memo(path, data_path, n, steps, seed, gate, features),
        )


@st.cache_data(show_spinner="Generating with each remedy and judging the copies…", max_entries=16)
def mitigate(
    path: str,
    prompts: tuple,
    methods: tuple,
    n: int,
    steps: int,
    seed: int,
    gate: str,
    data_path: str | None = None,
    features: str | None = None,
):
    """``memviz.mitigate.lab.run_lab``, cached per settings so that a rerun is instant."""
    from memviz.mitigate.lab import run_lab

    return _on_study(run_lab, path, prompts, methods, n, steps, seed, gate, data_path, features)


@st.cache_data(show_spinner="Tracing each remedy's knob (a few minutes)…", max_entries=8)
def mitigation_sweep(
    path: str,
    prompts: tuple,
    methods: tuple,
    n: int,
    steps: int,
    seed: int,
    gate: str,
    data_path: str | None = None,
    features: str | None = None,
):
    """``memviz.mitigate.lab.sweep``, cached per settings; it reuses the lab run's plain generations."""
    from memviz.mitigate.lab import sweep

    return _on_study(sweep, path, prompts, methods, n, steps, seed, gate, data_path, features)


@st.cache_data(show_spinner=False, max_entries=32)
def read_prompt_file(name: str, digest: str, _data: bytes, label_column: str | None = None, positive: tuple = ()):
    """``memviz.data.prompt_sets.read_prompts`` of an uploaded (or example) file's bytes, cached by their
    ``digest`` (SHA-256) so that a rerun does not parse it again; ValueError in one sentence."""
    from memviz.data.prompt_sets import read_prompts

    return read_prompts(name, label_column=label_column, positive=list(positive) or None, data=_data)


ORDINARY_PART = "ordinary"  # scan_prompts' reference: the prompts the file labels ordinary


@st.cache_data(show_spinner="Scanning the prompts (scores are stored on disk: a rescan is instant)…", max_entries=32)
def scan_prompts(
    path: str,
    data_path: str | None,
    name: str,
    digest: str,
    _data: bytes,
    label_column: str | None,
    positive: tuple,
    names: tuple,
    n: int,
    steps: int,
    seed: int,
    reference: str | None,
    fpr: float,
    features: str | None = None,
):
    """``memviz.detect.scan.scan`` of a prompt file (its bytes, cached by their ``digest``) with a
    progress bar while it scores, cached per settings so that a rerun (a row picked, a column
    sorted) is instant. ``reference``: None, ``"training-captions"`` or ``ORDINARY_PART`` (the
    prompts the label column marks ordinary). ValueError in one sentence."""
    from memviz.data.prompt_sets import from_list
    from memviz.detect.scan import scan

    prompts = read_prompt_file(name, digest, _data, label_column, positive)
    ref = reference
    if reference == ORDINARY_PART:
        if prompts.labels is None:
            raise ValueError("The ordinary part of a file is a reference only when a label column is chosen.")
        ref = from_list(
            [p for p, memorized in zip(prompts.prompts, prompts.labels) if not memorized],
            source=f"the ordinary prompts of {name}",
        )
    study = load_study(path, data_path, features=features)
    bar = st.progress(0.0, "Scoring the prompts…")
    shown = [-1]

    def on_batch(done: int, total: int) -> None:
        percent = int(100 * done / max(total, 1))
        if percent != shown[0]:  # at most 101 updates, however long the list (they are replayed on a rerun)
            shown[0] = percent
            bar.progress(min(percent / 100, 1.0), f"Scored {done:,} of {total:,} prompts…")

    try:
        with heavy():
            return scan(
                study,
                prompts,
                names=list(names),
                n=n,
                steps=steps,
                seed=seed,
                reference=ref,
                fpr=fpr,
                progress=False,
                on_batch=on_batch,
            )
    finally:
        bar.empty()


def audit_report(study: Study, scan=None, t0: float = 0.05, on_progress=None) -> tuple[bytes, bytes | None]:
    """(HTML, PDF or None where no browser is installed) of ``memviz.report`` for ``study`` and the scan
    in view (a ``ScanResult`` of the Scan page, or None), computed under the server-wide lock."""
    from memviz.figures.export import browser_path
    from memviz.report import build_report, html_to_pdf, to_html

    with heavy("Another session is computing; the report waits for it…"):
        rep = build_report(
            prepared(study) if study.train is not None else study,
            prompts=scan,
            t0=t0,
            progress=False,
            on_progress=on_progress,
        )
        html = to_html(rep)
        pdf = html_to_pdf(html) if browser_path() else None
    return html.encode(), pdf
