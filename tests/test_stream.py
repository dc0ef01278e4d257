"""Streamed datasets: every source decodes to the in-memory reader's pixels, captions and names; the
Study's per-row passes give the same table streamed and in memory; a second open reads no image; a
broken image is skipped and said; the memory of a pass over a streamed set does not grow with N."""

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from memviz.data.folder import load_data_source
from memviz.data.stream import StreamedImages, open_stream, should_stream


def _png(rng, size=12, rgb=False) -> bytes:
    shape = (size, size, 3) if rgb else (size, size)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same 30 captioned images (two of them identical) as a folder, a Parquet of bytes, a save_to_disk
    folder and two WebDataset shards."""
    import datasets

    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    pngs = [_png(rng) for _ in range(30)]
    pngs[7] = pngs[3]
    caps = [f"a picture number {i}" for i in range(30)]
    folder = root / "folder"
    folder.mkdir()
    lines = []
    for i, b in enumerate(pngs):
        (folder / f"{i:03d}.png").write_bytes(b)
        lines.append(f'{{"file_name": "{i:03d}.png", "text": "{caps[i]}"}}')
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in pngs], "text": caps})
    ds = ds.cast_column("image", datasets.Image())
    ds.to_parquet(str(root / "table.parquet"))
    ds.save_to_disk(str(root / "saved"))
    shards = root / "shards"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"part-{s:05d}.tar", "w") as tar:
            for i in range(s * 15, s * 15 + 15):
                for name, data in ((f"{i:05d}.png", pngs[i]), (f"{i:05d}.txt", caps[i].encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root, caps


@pytest.mark.parametrize("name", ["folder", "table.parquet", "saved", "shards"])
def test_every_source_streams_the_in_memory_pixels(sources, name):
    root, caps = sources
    streamed = open_stream(root / name, resolution=8, channels=1)
    assert isinstance(streamed.images, StreamedImages) and streamed.meta["streamed"]
    assert len(streamed) == 30 and tuple(streamed.images.shape) == (30, 1, 8, 8)
    assert streamed.captions == caps
    memory = load_data_source(root / ("folder" if name == "shards" else name), resolution=8, channels=1)
    np.testing.assert_array_equal(streamed.images[np.arange(30)].numpy(), memory.images.numpy())
    np.testing.assert_array_equal(streamed.images.flatten(1).numpy(), memory.images.flatten(1).numpy())
    assert torch.equal(streamed.images[5], memory.images[5])
    np.testing.assert_array_equal(streamed.copies(), memory.copies())  # identity: the content hash
    assert streamed.copies()[3] == streamed.copies()[7] == 2
    sub = streamed.subset([7, 1, 2])
    assert isinstance(sub.images, StreamedImages) and torch.equal(sub.images[0], memory.images[7])
    assert sub.captions == [caps[7], caps[1], caps[2]]
    assert any("Resized 30 images" in n for n in streamed.meta["notes"])


def test_a_second_open_reads_no_image_and_a_broken_one_is_skipped(sources, tmp_path, monkeypatch):
    import memviz.data.stream as stream

    root, _ = sources
    folder = tmp_path / "f"
    folder.mkdir()
    for f in sorted((root / "folder").glob("*.png"))[:6]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a header and nothing
    first = open_stream(folder, resolution=8, channels=1)
    assert len(first) == 5 and "002.png" not in first.meta["files"]
    assert any("could not be decoded" in n and "002.png" in n for n in first.meta["notes"])

    def no_pass(*a, **k):
        raise AssertionError("the content pass ran again")

    monkeypatch.setattr(stream, "_content_pass", no_pass)
    again = open_stream(folder, resolution=8, channels=1)
    np.testing.assert_array_equal(again.images.row_hashes, first.images.row_hashes)


def test_the_study_gives_the_same_table_streamed_and_in_memory(sources, make_model, tmp_path, monkeypatch):
    from memviz.study import open_study

    root, _ = sources
    model = make_model(num_class_embeds=None)
    streamed_data = open_stream(root / "table.parquet", resolution=8, channels=1)
    tables = {}
    for name, data in (("streamed", streamed_data), ("memory", load_data_source(root / "folder", 8, 1))):
        monkeypatch.setenv("MEMVIZ_CACHE", str(tmp_path / name))  # each computes its own: no row read back
        study = open_study(model, data, n=None)
        tables[name] = (
            study._row_keys(False, False), study.flipd_grid(rows=np.arange(30)), study.lid_data(),
            study.neighbors(4).index, study.spectra([0, 7], t=0.05),
        )  # fmt: skip
    s, m = tables["streamed"], tables["memory"]
    assert s[0] == m[0]  # the same content keys: the two share stored rows
    assert s[1].shape == (30, len(open_study(model, streamed_data).ts)) and np.isfinite(s[1]).all()
    np.testing.assert_array_equal(s[1], m[1])
    np.testing.assert_allclose(s[2], m[2])
    np.testing.assert_array_equal(s[3], m[3])
    np.testing.assert_allclose(s[4], m[4])


def test_the_one_streaming_rule():
    assert not should_stream(10_000, 16, 1) and should_stream(100_000, 256, 3)
    assert should_stream(1_000_000, 32, 3)  # 12 GB of float32


@pytest.mark.slow
def test_memory_of_a_streamed_pass_does_not_grow_with_n(tmp_path):
    """Peak RSS of a streamed pass over 2,000 and 8,000 images (a subprocess each) differs by far less
    than the in-memory set of the larger would take."""
    import subprocess
    import sys

    import datasets

    rng = np.random.default_rng(1)
    for n in (2000, 8000):
        pngs = [_png(rng, 64, rgb=True) for _ in range(n)]
        datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in pngs]}).cast_column(
            "image", datasets.Image()
        ).to_parquet(str(tmp_path / f"{n}.parquet"))
    code = (
        "import resource, sys, torch; from memviz.data.stream import open_stream; "
        "d = open_stream(sys.argv[1], resolution=64, channels=3); s = 0.0\n"
        "for rows, x in d.images.batches(): s += float(x.sum())\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    peak = {
        n: int(subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{n}.parquet")], capture_output=True,
                              text=True, check=True).stdout.split()[-1]) * 1024
        for n in (2000, 8000)
    }  # fmt: skip
    in_memory = 8000 * 3 * 64 * 64 * 4  # 393 MB of float32
    assert peak[8000] - peak[2000] < 0.2 * in_memory, peak


def test_an_unusable_caption_skips_its_row_as_the_in_memory_reader_does(tmp_path):
    import datasets

    rng = np.random.default_rng(3)
    caps = ["a cat", "bad \x00 caption", "a dog", "x" * 100_000]
    ds = datasets.Dataset.from_dict({"image": [{"bytes": _png(rng), "path": None} for _ in caps], "text": caps})
    ds.cast_column("image", datasets.Image()).to_parquet(str(tmp_path / "t.parquet"))
    streamed = open_stream(tmp_path / "t.parquet", resolution=8, channels=1)
    memory = load_data_source(tmp_path / "t.parquet", resolution=8, channels=1)
    assert streamed.captions == memory.captions == ["a cat", "a dog"]
    np.testing.assert_array_equal(streamed.images[np.arange(2)].numpy(), memory.images.numpy())
    assert any("caption cannot be used" in n for n in streamed.meta["notes"])
