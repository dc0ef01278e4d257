"""Memory-mapped rows (a latent model's latents): the rows read are the rows filled; an interrupted
build resumes from its finished chunks; a damaged chunk is filled again, never shown; a file cut short
is rebuilt; two writers build one key once; a pass over the latents does not hold them."""

import threading

import numpy as np
import pytest
import torch

import memviz.data.mapped as mapped
from memviz.data.mapped import MappedRows, mapped_rows


def _source(n=50, shape=(2, 3, 3)):
    values = np.random.default_rng(0).normal(size=(n, *shape)).astype(np.float32)
    calls: list[np.ndarray] = []

    def fill(rows):
        calls.append(np.asarray(rows))
        return values[rows]

    return values, fill, calls


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(mapped, "CHUNK_BYTES", 8 * 18 * 4)  # 8 rows of 18 float32 a chunk: 7 chunks for 50


def test_rows_read_are_the_rows_filled_and_a_second_open_fills_nothing():
    values, fill, calls = _source()
    z = mapped_rows("t_rows", "a", 50, fill)
    assert isinstance(z, MappedRows) and z.shape == (50, 2, 3, 3) and len(z) == 50
    np.testing.assert_array_equal(z[np.array([3, 49, 0])].numpy(), values[[3, 49, 0]])
    np.testing.assert_array_equal(z[5:9].numpy(), values[5:9])
    np.testing.assert_array_equal(z[torch.tensor([7])].numpy(), values[[7]])
    np.testing.assert_array_equal(z.flatten(1).numpy(), values.reshape(50, -1))
    np.testing.assert_array_equal(np.asarray(z.take([4, 2])), values[[4, 2]])
    assert z.take([4, 2]).fingerprint_part() != z.take([2, 4]).fingerprint_part()
    filled = sum(len(c) for c in calls)
    again = mapped_rows("t_rows", "a", 50, fill)
    np.testing.assert_array_equal(again.numpy(), values)
    assert sum(len(c) for c in calls) == filled == 51  # one row for the shape, then each row once


def test_an_interrupted_build_resumes_from_its_finished_chunks():
    values, fill, calls = _source()

    def dies(rows):
        if rows[0] >= 24:
            raise KeyboardInterrupt
        return fill(rows)

    with pytest.raises(KeyboardInterrupt):
        mapped_rows("t_resume", "a", 50, dies)
    done = {int(r) for c in calls for r in c}
    assert done == set(range(24))
    calls.clear()
    z = mapped_rows("t_resume", "a", 50, fill)
    assert {int(r) for c in calls for r in c} == set(range(24, 50))  # only the chunks not finished
    np.testing.assert_array_equal(z.numpy(), values)


def test_a_damaged_chunk_is_filled_again_and_repaired_on_disk(caplog):
    values, fill, calls = _source()
    path = mapped_rows("t_damage", "a", 50, fill)._path
    raw = np.load(path, mmap_mode="r+")
    raw[17] = 1e6  # chunk 2 (rows 16..23) damaged after it was written
    raw.flush()
    del raw
    calls.clear()
    z = mapped_rows("t_damage", "a", 50, fill)
    np.testing.assert_array_equal(z[np.arange(8)].numpy(), values[:8])
    assert not calls  # an intact chunk is only verified
    with caplog.at_level("WARNING", logger="memviz.data.mapped"):
        np.testing.assert_array_equal(z[np.array([17, 18])].numpy(), values[[17, 18]])
    assert [list(c) for c in calls] == [list(range(16, 24))] and "checksum" in caplog.text
    np.testing.assert_array_equal(np.load(path)[16:24], values[16:24])  # written back
    calls.clear()
    np.testing.assert_array_equal(mapped_rows("t_damage", "a", 50, fill).numpy(), values)
    assert not calls


def test_a_file_cut_short_is_built_again():
    values, fill, calls = _source()
    path = mapped_rows("t_short", "a", 50, fill)._path
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    calls.clear()
    np.testing.assert_array_equal(mapped_rows("t_short", "a", 50, fill).numpy(), values)
    assert sum(len(c) for c in calls) == 51
    with pytest.raises(ValueError, match="rows"):
        mapped_rows("t_short", "a", 49, fill)


def test_two_writers_of_one_key_build_it_once():
    values, fill, calls = _source()
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(mapped_rows("t_two", "a", 50, fill))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and sum(len(c) for c in calls) == 51
    for z in out:
        np.testing.assert_array_equal(z.numpy(), values)


@pytest.mark.slow
def test_a_pass_over_mapped_latents_does_not_hold_them(tmp_path):
    """A pass reading every row of 600 MB of stored rows in batches peaks far below their size."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, numpy as np; from memviz.data.mapped import mapped_rows\n"
        "start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "fill = lambda rows: np.full((len(rows), 4, 64, 64), 0.5, np.float32) + rows[:, None, None, None]\n"
        "z = mapped_rows('latents', 'big', 10000, fill)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "s = sum(float(x[:, 0, 0, 0].sum()) for _, x in z.batches())\n"
        "print(s, before, start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    env = {**os.environ, "MEMVIZ_CACHE": str(tmp_path)}
    total, before, start, after = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert float(total) == pytest.approx(sum(0.5 + r for r in range(10000)))
    size = 10000 * 4 * 64 * 64 * 4  # 655 MB of float32
    assert (int(after) - int(start)) * 1024 < 0.15 * size, (start, before, after)  # building and reading it
