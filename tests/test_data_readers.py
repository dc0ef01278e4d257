"""Readers of a user's own image+caption data (memviz.data.folder, memviz.data.tables), with known answers:
every image is one flat grey value v, its caption names v, so each test checks the right caption landed
with the right pixels."""

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from memviz.data.folder import load_data_source, load_image_folder, load_npz

VALUES = (10, 60, 110, 160, 210)


def _png(path, value, size=6, mode="L"):
    """A flat image of grey ``value`` at ``path``; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)
    return path


def _png_bytes(value, size=6):
    out = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _values(data):
    """(N,) each image's grey value, back in [0, 255]."""
    return [int(round((float(x.mean()) + 1) * 127.5)) for x in data.images]


def _pairs(data):
    """{grey value: caption}: which caption each image came with."""
    return dict(zip(_values(data), data.captions))


def _note(data, start):
    """The one note starting with ``start``."""
    found = [n for n in data.meta["notes"] if n.startswith(start)]
    assert len(found) == 1, data.meta["notes"]
    return found[0]


# ---- image folders -----------------------------------------------------------------------------------


def test_metadata_jsonl_with_dot_slash_names_and_a_sub_folder(tmp_path):
    for v in VALUES[:3]:
        _png(tmp_path / "imgs" / f"{v}.png", v)
    _png(tmp_path / "part" / "x.png", VALUES[3])
    lines = [{"file_name": "./imgs/60.png", "text": "v60"}, {"file_name": "imgs\\10.png", "text": "v10"}]
    lines.append({"file_name": "imgs/110.png", "text": "v110", "other": 1})
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    (tmp_path / "part" / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "text": "v160"}))
    data = load_data_source(tmp_path)
    assert _values(data) == [60, 10, 110, 160]  # metadata order, one row per line
    assert data.captions == ["v60", "v10", "v110", "v160"]
    assert list(data.meta["files"]) == ["imgs/60.png", "imgs/10.png", "imgs/110.png", "part/x.png"]
    assert data.meta["notes"] == [] and data.meta["format"] == "imagefolder metadata"


def test_metadata_csv_keeps_captions_exactly_and_says_what_is_missing(tmp_path):
    for v in VALUES[:4]:
        _png(tmp_path / f"{v}.png", v)
    frame = pd.DataFrame(
        {
            "file_name": ["10.png", "60.png", "110.png", "gone.png"],
            "caption": ['a "red", round NA', "  spaced  ", "", "lost"],
        }
    )
    frame.to_csv(tmp_path / "metadata.csv", index=False)
    data = load_image_folder(tmp_path)
    assert _pairs(data) == {10: 'a "red", round NA', 60: "  spaced  ", 110: ""}
    assert _note(data, "1 image has") == "1 image has no caption in metadata.csv (read as the empty prompt): 110.png."
    assert _note(data, "metadata.csv names") == "metadata.csv names 1 image file that is not there: gone.png."
    assert _note(data, "Left out") == (
        "Left out 1 image that no metadata file names (a Hugging Face imagefolder does too): 160.png."
    )


def test_caption_column_is_chosen_text_then_caption_then_prompt_or_as_named(tmp_path):
    _png(tmp_path / "a.png", 10)
    row = {"file_name": "a.png", "prompt": "p", "caption": "c", "alt": "x"}
    (tmp_path / "metadata.jsonl").write_text(json.dumps(row))
    assert load_data_source(tmp_path).captions == ["c"]
    assert load_data_source(tmp_path, caption_column="alt").captions == ["x"]
    with pytest.raises(ValueError, match=r"metadata.jsonl has no column 'nope'; it has 'file_name', 'prompt'"):
        load_data_source(tmp_path, caption_column="nope")


def test_sidecar_txt_captions(tmp_path):
    for v in VALUES[:3]:
        _png(tmp_path / "10_sks dog" / f"img_{v}.png", v)
        if v != 110:
            (tmp_path / "10_sks dog" / f"img_{v}.txt").write_text(f"sks dog, v{v}\r\n")
    data = load_data_source(tmp_path)
    assert _pairs(data) == {10: "sks dog, v10", 60: "sks dog, v60", 110: ""}
    assert data.labels is None and data.meta["format"] == "sidecar captions"
    assert _note(data, "1 image has") == (
        "1 image has no caption file (.txt) or an empty one (read as the empty prompt): 10_sks dog/img_110.png."
    )


def test_class_sub_folders_become_labels(tmp_path):
    _png(tmp_path / "cat" / "1.png", 10)
    _png(tmp_path / "cat" / "2.png", 60)
    _png(tmp_path / "dog" / "3.png", 110)
    data = load_data_source(tmp_path)
    assert data.class_names == ["cat", "dog"] and list(data.labels) == [0, 0, 1] and data.captions is None
    assert _values(data) == [10, 60, 110] and list(data.meta["files"]) == ["cat/1.png", "cat/2.png", "dog/3.png"]


def test_a_resize_is_always_said(tmp_path):
    for i in range(7):
        _png(tmp_path / f"{i}.png", 20 * i, size=28)
    _png(tmp_path / "odd.png", 200, size=20)
    data = load_data_source(tmp_path, resolution=16)
    assert data.images.shape == (8, 1, 16, 16)
    assert data.meta["notes"] == [
        "Resized 8 images from 28x28 (7), 20x20 (1) to 16x16 (bicubic), the resolution asked for."
    ]
    (tmp_path / "odd.png").unlink()
    note = load_data_source(tmp_path, resolution=16).meta["notes"]
    assert note == ["Resized 7 images from 28x28 to 16x16 (bicubic), the resolution asked for."]
    assert load_data_source(tmp_path, resolution=28).meta["notes"] == []


def test_an_unreadable_image_is_skipped_and_named(tmp_path):
    _png(tmp_path / "a" / "good.png", 10)
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    cut = _png_bytes(60, size=64)
    (tmp_path / "a" / "cut.png").write_bytes(cut[: len(cut) // 2])  # the header reads, the pixels do not
    data = load_data_source(tmp_path)
    assert _values(data) == [10] and list(data.meta["files"]) == ["a/good.png"]
    note = _note(data, "Skipped 2 unreadable images")
    assert note.startswith("Skipped 2 unreadable images: a/bad.png (UnidentifiedImageError), a/cut.png (")


def test_a_caption_too_long_is_skipped_and_names_the_file(tmp_path):
    _png(tmp_path / "b" / "x.png", 10)
    _png(tmp_path / "b" / "y.png", 60)
    (tmp_path / "b" / "x.txt").write_text("w" * 1500)
    (tmp_path / "b" / "y.txt").write_text("fine")
    data = load_data_source(tmp_path)
    assert _pairs(data) == {60: "fine"}
    assert data.meta["notes"] == [
        "Skipped 1 image whose caption cannot be used: b/x.png (a caption of 1,500 characters; at most 1,000)."
    ]
    (tmp_path / "b" / "y.txt").write_text("bell\x07")
    with pytest.raises(ValueError, match=r"No image in .* can be used: Skipped 2 images whose caption .*control"):
        load_data_source(tmp_path)


def test_broken_metadata_lines_are_skipped_with_their_line_numbers(tmp_path):
    for v in VALUES[:2]:
        _png(tmp_path / f"{v}.png", v)
    text = '{"file_name": "10.png", "text": "v10"}\n{"file_name": "60.png", "te\n\n[1, 2]\n{"text": "no name"}\n'
    (tmp_path / "metadata.jsonl").write_text(text + '{"file_name": "60.png", "text": "v60"}\n')
    data = load_data_source(tmp_path)
    assert _pairs(data) == {10: "v10", 60: "v60"}
    assert data.meta["notes"] == [
        "Skipped 3 lines of metadata.jsonl that are not a JSON object with a file_name: line 2, line 4, line 5."
    ]


def test_names_are_listed_at_most_five_then_counted(tmp_path):
    _png(tmp_path / "a.png", 10)
    rows = [{"file_name": "a.png", "text": "a"}] + [{"file_name": f"m{i}.png"} for i in range(8)]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    note = _note(load_data_source(tmp_path), "metadata.jsonl names")
    assert (
        note
        == "metadata.jsonl names 8 image files that are not there: m0.png, m1.png, m2.png, m3.png, m4.png and 3 more."
    )


def test_hidden_files_and_links_out_of_the_folder_are_left_out(tmp_path):
    _png(tmp_path / "data" / "a.png", 10)
    _png(tmp_path / "data" / ".ipynb_checkpoints" / "a.png", 60)
    (tmp_path / "data" / "._b.png").write_bytes(b"mac resource fork")
    outside = _png(tmp_path / "elsewhere.png", 110)
    (tmp_path / "data" / "link.png").symlink_to(outside)
    data = load_data_source(tmp_path / "data")
    assert _values(data) == [10]
    assert data.meta["notes"] == [
        "Left out 2 hidden files (a name starting with '.'): ._b.png, .ipynb_checkpoints/a.png.",
        "Refused 1 link to images outside data: link.png.",
    ]


def test_an_empty_or_unreadable_folder_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        load_data_source(tmp_path)
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="holds no images .*; it holds t.parquet: give one of those"):
        load_data_source(tmp_path)
    (tmp_path / "x.png").write_bytes(b"junk")
    (tmp_path / "y.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"^No image in .* can be used: x.png is not a readable image "):
        load_data_source(tmp_path)
    with pytest.raises(ValueError, match="No file or folder at"):
        load_data_source(tmp_path / "missing")
    with pytest.raises(ValueError, match="is not data memviz reads"):
        load_data_source(tmp_path / "x.png")


def test_mixed_grey_and_colour_read_as_rgb_and_channels_convert(tmp_path):
    _png(tmp_path / "g.png", 10)
    _png(tmp_path / "c.png", 60, mode="RGB")
    Image.new("RGBA", (6, 6), (110, 110, 110, 0)).save(tmp_path / "t.png")
    data = load_data_source(tmp_path)
    assert data.images.shape == (3, 3, 6, 6) and _values(data) == [60, 10, 110]
    assert data.meta["notes"] == [
        "Read 1 grayscale image as RGB, as the others have colour: g.png.",
        "Dropped the transparency (alpha) of 1 image: t.png.",
    ]
    grey = load_data_source(tmp_path, channels=1)
    assert grey.images.shape == (3, 1, 6, 6)
    assert _note(grey, "Read 2 colour images as grayscale") == (
        "Read 2 colour images as grayscale (1 channel asked for): c.png, t.png."
    )


def test_16_bit_images_are_scaled_not_clipped_and_exif_turns_upright(tmp_path):
    Image.fromarray(np.full((8, 4), 257 * 100, np.uint16)).save(tmp_path / "deep.png")
    wide = Image.fromarray(np.full((4, 8), 100, np.uint8))
    exif = wide.getexif()
    exif[0x0112] = 6  # turned a quarter
    wide.save(tmp_path / "photo.jpg", exif=exif, quality=100)
    data = load_data_source(tmp_path)
    assert data.images.shape == (2, 1, 8, 4)  # the photo upright is 4 wide, 8 high
    assert data.images[0].mean().item() == pytest.approx(100 / 127.5 - 1, abs=0.02)
    data = load_data_source(tmp_path, resolution=4)
    assert _values(data) == [100, 100]
    assert "Scaled 1 16-bit image to 8 bits: deep.png." in data.meta["notes"]
    assert "Turned 1 image upright, as the EXIF orientation says: photo.jpg." in data.meta["notes"]


def test_sizes_are_refused_from_headers_before_decoding(tmp_path, monkeypatch):
    Image.new("L", (2000, 2000)).save(tmp_path / "a.png")
    table = pa.table({"image": [{"bytes": (tmp_path / "a.png").read_bytes(), "path": None}], "text": ["t"]})
    pq.write_table(table, tmp_path / "t.parquet")
    monkeypatch.setenv("MEMVIZ_MAX_BYTES", "16M")
    decoded = []
    monkeypatch.setattr(Image.Image, "convert", lambda *a, **k: decoded.append(a))
    with pytest.raises(ValueError, match=r"The 1 images in .*t.parquet would take 30.5 MiB"):
        load_data_source(tmp_path / "t.parquet")
    assert decoded == []


# ---- tables ------------------------------------------------------------------------------------------


def _table_images(tmp_path):
    for v in VALUES[:3]:
        _png(tmp_path / "img" / f"{v}.png", v)


def test_parquet_with_paths_relative_and_absolute(tmp_path):
    _table_images(tmp_path)
    files = ["img/10.png", "./img/60.png", str(tmp_path / "img" / "110.png")]
    pq.write_table(pa.table({"file_name": files, "text": ["v10", "v60", "v110"]}), tmp_path / "t.parquet")
    data = load_data_source(tmp_path / "t.parquet")
    assert _pairs(data) == {10: "v10", 60: "v60", 110: "v110"}
    assert list(data.meta["files"]) == ["img/10.png", "img/60.png", "img/110.png"]
    assert data.meta["format"] == "parquet" and data.name == "t"


def test_parquet_with_bytes_structs_and_plain_bytes(tmp_path):
    structs = [{"bytes": _png_bytes(v), "path": f"orig_{v}.png"} for v in VALUES[:3]] + [{"bytes": None, "path": None}]
    frame = pa.table(
        {"label_text": ["v10", "v60", "v110", "none"], "picture": structs, "prompt": ["p10", "p60", "p110", "x"]}
    )
    pq.write_table(frame, tmp_path / "hf.parquet")
    data = load_data_source(tmp_path / "hf.parquet")  # the struct found by its type, the caption as "prompt"
    assert _pairs(data) == {10: "p10", 60: "p60", 110: "p110"}
    assert list(data.meta["files"]) == ["hf.parquet#0", "hf.parquet#1", "hf.parquet#2"]
    assert data.meta["notes"] == ["Skipped 1 row of hf.parquet with no image: row 3."]
    plain = pa.table({"img": [_png_bytes(v) for v in VALUES[:2]], "data": ["a", "b"]})
    pq.write_table(plain, tmp_path / "plain.parquet")
    data = load_data_source(tmp_path / "plain.parquet", caption_column="data")
    assert _pairs(data) == {10: "a", 60: "b"}
    data = load_data_source(tmp_path / "plain.parquet")
    assert data.captions is None
    assert data.meta["notes"] == [
        "plain.parquet has no caption column (text, caption or prompt); read without captions."
    ]
    with pytest.raises(ValueError, match=r"plain.parquet has no column 'pic'"):
        load_data_source(tmp_path / "plain.parquet", image_column="pic")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "none.parquet")
    with pytest.raises(ValueError, match=r"none.parquet has no image column .*image_column="):
        load_data_source(tmp_path / "none.parquet")


@pytest.mark.parametrize("sep, suffix", [(",", ".csv"), (";", ".csv"), ("\t", ".tsv"), ("|", ".csv")])
def test_csv_and_tsv_with_paths_keep_captions_byte_for_byte(tmp_path, sep, suffix):
    _table_images(tmp_path)
    captions = ['said "hi", twice; then | left', "NA", "  "]
    frame = pd.DataFrame({"image": ["img/10.png", "img\\60.png", "img/110.png"], "caption": captions})
    frame.to_csv(tmp_path / f"t{suffix}", sep=sep, index=False)
    data = load_data_source(tmp_path / f"t{suffix}")
    assert _pairs(data) == {10: captions[0], 60: "NA", 110: "  "}
    assert data.meta["notes"] == []


def test_csv_lines_with_too_many_cells_are_skipped(tmp_path):
    _table_images(tmp_path)
    (tmp_path / "t.csv").write_text("file_name,text\nimg/10.png,v10\nimg/60.png,a,b\nimg/110.png,v110\n")
    data = load_data_source(tmp_path / "t.csv")
    assert _pairs(data) == {10: "v10", 110: "v110"}
    assert data.meta["notes"] == ["Skipped 1 line of t.csv with more cells than its header: 'img/60.png'."]
    (tmp_path / "latin.csv").write_bytes("file_name,text\nimg/10.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.csv is not UTF-8 text"):
        load_data_source(tmp_path / "latin.csv")


def test_a_table_path_leading_outside_its_folder_is_refused(tmp_path):
    _table_images(tmp_path / "inside")
    secret = _png(tmp_path / "secret.png", 250)
    files = ["img/10.png", "../secret.png", "../../etc/passwd", str(secret), "https://example.com/a.png"]
    frame = pd.DataFrame({"file_name": files, "text": ["v10", "s", "p", "s2", "u"]})
    frame.to_csv(tmp_path / "inside" / "t.csv", index=False)
    data = load_data_source(tmp_path / "inside" / "t.csv")
    assert _pairs(data) == {10: "v10"}
    assert data.meta["notes"] == [
        f"Refused 3 image paths in t.csv that lead outside its folder: ../secret.png, ../../etc/passwd, {secret}.",
        "Skipped 1 image named by a URL in t.csv (memviz reads local files only): https://example.com/a.png.",
    ]
    (tmp_path / "inside" / "metadata.jsonl").write_text(json.dumps({"file_name": "../secret.png", "text": "s"}))
    with pytest.raises(ValueError, match="can be used: Refused 1 image path in metadata.jsonl that lead"):
        load_data_source(tmp_path / "inside")


# ---- datasets' save_to_disk --------------------------------------------------------------------------


def _hf_dataset(values, labels=False):
    datasets = pytest.importorskip("datasets")
    images = [Image.fromarray(np.full((6, 6), v, np.uint8)) for v in values]
    columns = {"image": images, "text": [f"v{v}" for v in values]}
    features = {"image": datasets.Image(), "text": datasets.Value("string")}
    if labels:
        columns["label"] = [i % 2 for i in range(len(values))]
        features["label"] = datasets.ClassLabel(names=["even", "odd"])
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_a_save_to_disk_folder(tmp_path):
    _hf_dataset(VALUES, labels=True).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    data = load_data_source(tmp_path / "saved")
    assert _pairs(data) == {v: f"v{v}" for v in VALUES}
    assert _values(data) == list(VALUES) and list(data.labels) == [0, 1, 0, 1, 0]
    assert data.class_names == ["even", "odd"] and data.meta["format"] == "save_to_disk"
    assert list(data.meta["files"]) == [f"saved#{i}" for i in range(5)] and data.meta["notes"] == []
    assert load_image_folder(tmp_path / "saved", resolution=3).images.shape == (5, 1, 3, 3)


def test_a_dataset_dict_folder_reads_its_train_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    splits = {"train": _hf_dataset(VALUES[:3]), "test": _hf_dataset(VALUES[3:])}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    data = load_data_source(tmp_path / "dd")
    assert _pairs(data) == {10: "v10", 60: "v60", 110: "v110"}
    assert data.meta["notes"] == ["Read the train split of dd (it also has test, not read)."]
    assert list(data.meta["files"]) == ["dd/train#0", "dd/train#1", "dd/train#2"]
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["a", "b"]}))
    with pytest.raises(ValueError, match="has no train split"):
        load_data_source(tmp_path / "dd")


def test_a_save_to_disk_folder_naming_a_file_outside_is_refused(tmp_path):
    _hf_dataset(VALUES[:2]).save_to_disk(str(tmp_path / "saved"))
    state = json.loads((tmp_path / "saved" / "state.json").read_text())
    state["_data_files"] = [{"filename": "../../etc/passwd"}]
    (tmp_path / "saved" / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"state.json names '../../etc/passwd', which is not in"):
        load_data_source(tmp_path / "saved")


def test_npz_and_folder_results_carry_files_and_notes(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 4, 4), np.uint8))
    data = load_data_source(tmp_path / "d.npz")
    assert list(data.meta["files"]) == ["d.npz#0", "d.npz#1"] and data.meta["notes"] == []
    assert list(load_npz(tmp_path / "d.npz").meta["files"]) == ["d.npz#0", "d.npz#1"]
    assert load_data_source(tmp_path / "d.npz", resolution=8, channels=2).images.shape == (2, 1, 4, 4)  # as it is
    with pytest.raises(ValueError, match=r"1 \(grayscale\) or 3 \(RGB\) channels; 4 were asked for"):
        load_data_source(tmp_path, channels=4)
    _png(tmp_path / "a.png", 10)
    assert load_data_source(tmp_path, resolution=np.int64(3)).images.shape == (1, 1, 3, 3)


def test_tables_are_bounded_before_they_are_read(tmp_path, monkeypatch):
    import memviz.data.tables as tables

    zeros = pa.table({"image": [{"bytes": bytes(3 * 2**20), "path": None}], "text": ["t"]})
    pq.write_table(zeros, tmp_path / "z.parquet", compression="zstd")  # 3 MiB of zeros, a few KiB on disk
    assert (tmp_path / "z.parquet").stat().st_size < 2**20
    monkeypatch.setenv("MEMVIZ_MAX_BYTES", "1M")
    with pytest.raises(ValueError, match=r"The columns image, text of .*z.parquet would take 3.0 MiB"):
        load_data_source(tmp_path / "z.parquet")
    monkeypatch.delenv("MEMVIZ_MAX_BYTES")
    monkeypatch.setattr(tables, "MAX_ROWS", 2)
    pd.DataFrame({"file_name": ["a.png"] * 3}).to_csv(tmp_path / "long.csv", index=False)
    with pytest.raises(ValueError, match="long.csv has more than 2 rows; split it"):
        load_data_source(tmp_path / "long.csv")
    pq.write_table(pa.table({"file_name": ["a.png"] * 3}), tmp_path / "long.parquet")
    with pytest.raises(ValueError, match="long.parquet has more than 2 rows"):
        load_data_source(tmp_path / "long.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="junk.parquet is not a readable Parquet file"):
        load_data_source(tmp_path / "junk.parquet")


def test_unusable_paths_in_a_table_are_skipped_not_fatal(tmp_path):
    _table_images(tmp_path)
    names = ["img/10.png", "img/\x00.png", "x" * 5000 + ".png"]
    pq.write_table(pa.table({"file_name": names, "text": ["v10", "nul", "long"]}), tmp_path / "t.parquet")
    data = load_data_source(tmp_path / "t.parquet")
    assert _pairs(data) == {10: "v10"}
    assert _note(data, "Skipped 2 unusable image paths in t.parquet: 'img/\\x00.png', 'xxx")


def test_a_file_named_twice_in_metadata_is_read_once_a_line(tmp_path):
    _png(tmp_path / "a.png", 10)
    _png(tmp_path / "b.png", 60)
    rows = [
        {"file_name": "a.png", "text": "one"},
        {"file_name": "b.png", "text": "b"},
        {"file_name": "a.png", "text": "two"},
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = load_data_source(tmp_path)
    assert _values(data) == [10, 60, 10] and data.captions == ["one", "b", "two"]
    assert data.meta["notes"] == ["The metadata names 1 file more than once (read once a line, as in training): a.png."]
    assert list(data.copies()) == [2, 1, 2]
