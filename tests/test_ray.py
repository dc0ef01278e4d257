"""The Ray engine on this machine's private local cluster: the same table as the local engine, a
rerun after a killed driver resumes from the stored batches, a killed worker is retried, and a
missing Ray or an unreachable address is one sentence."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is an extra: pip install 'memviz[ray]'")

from tests.test_stream import sources  # noqa: E402, F401 - the same images as a folder, a Parquet and shards


def _cli(*args, cache: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEMVIZ_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    return subprocess.run(
        [sys.executable, "-m", "memviz", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def local_table(tmp_path_factory) -> pd.DataFrame:
    """demo-toy's whole table, computed by the local engine."""
    folder = tmp_path_factory.mktemp("local")
    out = _cli("compute", "lid", "--model", "demo-toy", "--out", str(folder / "t.parquet"), cache=folder / "cache")
    assert out.returncode == 0, out.stderr
    return pd.read_parquet(folder / "t.parquet")


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and list(a.columns)[0] == "row"
    np.testing.assert_array_equal(a.row, b.row)
    for c in a.columns:
        if a[c].dtype.kind == "f":
            np.testing.assert_allclose(a[c], b[c], rtol=1e-5, atol=1e-4, err_msg=c)
        else:
            np.testing.assert_array_equal(a[c], b[c], err_msg=c)


def test_the_ray_engine_gives_the_local_table_and_a_rerun_reuses_it(tmp_path, local_table):
    out = _cli(
        "compute",
        "lid",
        "--model",
        "demo-toy",
        "--engine",
        "ray",
        "--workers",
        "2",
        "--batch-size",
        "128",
        "--out",
        str(tmp_path / "t.parquet"),
        cache=tmp_path / "cache",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    _same(local_table, pd.read_parquet(tmp_path / "t.parquet"))
    # the local engine (what the app runs) reads every row the Ray engine stored
    again = _cli(
        "compute", "lid", "--model", "demo-toy", "--out", str(tmp_path / "u.parquet"), cache=tmp_path / "cache"
    )
    assert again.returncode == 0 and f"reused {len(local_table)} of {len(local_table)} rows" in again.stderr


def test_a_rerun_after_a_killed_driver_resumes_from_the_finished_batches(tmp_path, local_table):
    cache = tmp_path / "cache"
    env = {**os.environ, "MEMVIZ_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    args = [
        sys.executable,
        "-m",
        "memviz",
        "compute",
        "lid",
        "--model",
        "demo-toy",
        "--engine",
        "ray",
        "--batch-size",
        "16",
        "--out",
        str(tmp_path / "t.parquet"),
    ]
    driver = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    parts = lambda: list(cache.glob("flipd/*/part-*.npz"))  # noqa: E731
    deadline = time.time() + 300
    while len(parts()) < 3 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: its Ray lingers
    driver.wait()
    stored = len(parts())
    assert 3 <= stored and not (tmp_path / "t.parquet").exists()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    reused = int(out.stderr.split("reused ")[1].split(" of ")[0])
    assert 16 * 3 <= reused < len(local_table)  # the finished batches, not the rest
    _same(local_table, pd.read_parquet(tmp_path / "t.parquet"))
    try:
        os.killpg(driver.pid, signal.SIGKILL)  # what the killed driver left running
    except ProcessLookupError:
        pass


def _map_workers() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"PassWorker" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_killed_worker_is_retried_and_no_row_is_lost(tmp_path, monkeypatch, local_table):
    from memviz.runner.ray_runner import RayRunner
    from memviz.study.core import open_study

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    study = open_study("demo-toy", n=None)
    study.batch_size = 16
    killed = []

    def kill_one_worker():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            workers = _map_workers()
            if workers and list(tmp_path.glob("flipd/*/part-*.npz")):
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.05)

    with RayRunner(workers=2) as runner:
        study.runner = runner
        watcher = threading.Thread(target=kill_one_worker)
        watcher.start()
        grid = study.flipd_grid(conditional=False)
        watcher.join()
    assert killed, "no worker was killed: the test proves nothing"
    assert grid.shape == (len(local_table), len(study.ts)) and np.isfinite(grid).all()
    expected = local_table.set_index("row").flipd_uncond.to_numpy()
    np.testing.assert_allclose(study.flipd(0.05, conditional=False), expected, rtol=1e-5, atol=1e-4)


def test_one_actor_pool_for_a_whole_run_loads_the_model_once_per_worker(tmp_path, monkeypatch):
    """Three passes (unconditional, conditional and held-out FLIPD) run on the same two workers, each of
    which opened the Study once and built three batch functions, and give the local engine's grids."""
    from memviz.runner.ray_runner import RayRunner
    from memviz.study.core import open_study

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "ray"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    study = open_study("demo-mnist", n=24, seed=5)  # seed 5: no row in the demo's shipped store
    study.batch_size = 8
    with RayRunner(workers=2) as runner:
        study.runner = runner
        grids = [study.flipd_grid(conditional=False), study.flipd_grid(conditional=True)]
        grids.append(study.flipd_grid(conditional=False, rows=np.arange(16), held_out=True))
        info = runner.workers_info()
        assert runner.startup_s > 0
    assert len({i["pid"] for i in info}) == 2 and [i["opened"] for i in info] == [1, 1], info
    assert all(i["built"] == 3 for i in info), info
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "local"))
    local = open_study("demo-mnist", n=24, seed=5)
    expected = [local.flipd_grid(conditional=False), local.flipd_grid(conditional=True)]
    expected.append(local.flipd_grid(conditional=False, rows=np.arange(16), held_out=True))
    for got, want in zip(grids, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_without_ray_or_with_an_unreachable_address_one_sentence_in_seconds(tmp_path, monkeypatch, capsys):
    from memviz.cli.commands import main

    start = time.perf_counter()
    out = _cli("compute", "lid", "--model", "demo-toy", "--engine", "ray", "--address", "127.0.0.1:9", cache=tmp_path)
    assert out.returncode == 2 and "No Ray cluster answers at 127.0.0.1:9" in out.stderr
    assert time.perf_counter() - start < 60 and "Traceback" not in out.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["compute", "lid", "--model", "demo-toy", "--engine", "ray"]) == 2
    assert 'pip install "memviz[ray]"' in capsys.readouterr().err


class RebuildingRunner:
    """Runs each batch with the function its Task rebuilds (as a Ray worker would), in this process."""

    def __init__(self):
        self.tasks = []

    def map(self, fn, batches, task=None):
        self.tasks.append(type(task).__name__)
        built = task.build()
        for batch in batches:
            yield batch, built(batch)


def test_tasks_rebuild_the_same_batch_functions(tmp_path, monkeypatch):
    """What a worker builds from a StudyTask or a PromptTask computes what this process computes."""
    from memviz.detect.prompts import prompt_scores
    from memviz.study.core import open_study

    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("MEMVIZ_SHIPPED", "0")  # computed, not read from the demo's store
    study = open_study("demo-mnist", n=24)
    expected = study.flipd_grid(conditional=False), study.spectra(study.rows[:3])
    prompts = ["3", "memorized-00"]
    kw = dict(n=1, steps=1, reps=1, sample_steps=3, progress=False, names=["wen", "nn_distance"])
    scores = prompt_scores(study.model, prompts, study.reference, **kw).scores
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "b"))  # nothing stored: all recomputed
    remote = open_study("demo-mnist", n=24)
    remote.runner = RebuildingRunner()
    np.testing.assert_allclose(remote.flipd_grid(conditional=False), expected[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(remote.spectra(remote.rows[:3]), expected[1], rtol=1e-4, atol=1e-3)
    again = prompt_scores(remote.model, prompts, remote.reference, runner=remote.runner, spec=remote.spec, **kw).scores
    assert remote.runner.tasks == ["StudyTask", "StudyTask", "PromptTask"]
    for name in scores:
        np.testing.assert_allclose(again[name], scores[name], rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.slow
def test_eval_detection_on_ray_gives_the_local_rows(tmp_path):
    """A small eval-detection (every detector, both levels) by both engines: the same AUROCs."""
    import json

    args = [
        "eval-detection",
        "--model",
        "demo-mnist",
        "--n",
        "1",
        "--steps",
        "1",
        "--reps",
        "1",
        "--sample-steps",
        "4",
        "--n-ordinary",
        "6",
    ]
    rows = {}
    for engine in ("local", "ray"):
        out = _cli(*args, "--engine", engine, "--json", str(tmp_path / f"{engine}.json"), cache=tmp_path / engine)
        assert out.returncode == 0, out.stderr[-3000:]
        rows[engine] = json.loads((tmp_path / f"{engine}.json").read_text())
    assert [(r["detector"], r["level"], r["auroc"]) for r in rows["local"]] == [
        (r["detector"], r["level"], r["auroc"]) for r in rows["ray"]
    ]


def test_ray_data_reads_the_shards_and_the_workers_reuse_what_it_read(sources, tmp_path, monkeypatch):  # noqa: F811
    """The content pass on Ray Data (read_parquet, read_webdataset, read_binary_files) gives the local
    digests; on a cluster larger than this machine, a Study opened with a RayRunner on WebDataset shards
    hashes no image in this process, and its
    FLIPD grid (the workers opening the same shards from the store) is the local engine's."""
    from memviz.data import stream as st
    from memviz.data.tables import Notes
    from memviz.runner.ray_runner import RayRunner
    from memviz.study.core import open_study

    root, _ = sources
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "ray"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with RayRunner(workers=1) as runner:
        for name in ("table.parquet", "shards", "folder"):
            source = st._source(root / name, None, None, Notes())
            mode, side = st._first_shape(source, 1, 16, root / name)
            got, want = st._ray_content_pass(source, mode, side), st._content_pass(source, mode, side, False)
            assert got is not None, name
            for column in want:
                np.testing.assert_array_equal(got[column], want[column], err_msg=f"{name}: {column}")
        assert st._ray_content_pass(st._source(root / "saved", None, None, Notes()), mode, side) is None  # Arrow
        assert not st.ray_data_pays()  # one machine: hashed here, where it measured faster
        monkeypatch.setattr(st, "ray_data_pays", lambda: True)  # as on a cluster larger than this machine
        monkeypatch.setattr(st, "_hash_cells", lambda *a: pytest.fail("hashed in the driver"))
        study = open_study("demo-mnist", root / "shards", n=6, runner=runner)
        assert study.runner is runner and study.train.meta["streamed"] and len(study.train) == 30
        grid = study.flipd_grid(conditional=False)
    monkeypatch.undo()
    monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / "local"))
    local = open_study("demo-mnist", root / "shards", n=6)
    np.testing.assert_array_equal(local.rows, study.rows)
    np.testing.assert_allclose(local.flipd_grid(conditional=False), grid, rtol=1e-5, atol=1e-4)
