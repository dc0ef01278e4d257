"""The one prompt-file reader: every format of the literature, every column kept, text byte for
byte, labels and splits, and one sentence for every bad file."""

import json

import numpy as np
import pandas as pd
import pytest

from memviz.data.prompt_sets import labelled_prompts, read_prompts

ODD = ["  leading and trailing spaces  ", 'a "quoted", comma; semicolon', "ünïcödé ✓ 猫", "tab\tinside"]


def test_txt_skips_blank_lines_and_comments_and_keeps_text_byte_for_byte(tmp_path):
    f = tmp_path / "p.txt"
    f.write_bytes(("# a comment\n\n" + "\n".join(ODD) + "\r\n   \n#another\nlast").encode())
    ps = read_prompts(f)
    assert ps.prompts == ODD + ["last"]
    assert ps.labels is None and list(ps.table.columns) == ["prompt"]


def test_wen_jsonl_keeps_every_key(tmp_path):
    """Wen et al.'s sdv1_500_memorized.jsonl: caption, index, url."""
    f = tmp_path / "sdv1_500_memorized.jsonl"
    rows = [{"caption": c, "index": i, "url": f"https://x/{i}.jpg"} for i, c in enumerate(ODD)]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ps = read_prompts(f)
    assert ps.prompts == ODD
    assert list(ps.table.columns) == ["prompt", "index", "url"]
    assert ps.table["index"].tolist() == [0, 1, 2, 3] and ps.table.url[2] == "https://x/2.jpg"


@pytest.mark.parametrize("key", ["prompt", "caption", "text", "Caption"])
def test_jsonl_finds_the_prompt_key(tmp_path, key):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({key: "x y", "other": 1}) + "\n")
    assert read_prompts(f).prompts == ["x y"]


def test_nemo_semicolon_csv_with_named_classes(tmp_path):
    """NeMo's memorized_laion_prompts.csv: Caption;URL;type;mean_sscd;max_sscd;Index, types MV/TV/RV/N."""
    f = tmp_path / "memorized_laion_prompts.csv"
    f.write_text(
        "Caption;URL;type;mean_sscd;max_sscd;Index\n"
        '"The Long; Dark";http://a;MV;0.91;0.95;0\n'
        "Living in the Light, with Ann;http://b;TV;0.61;0.7;1\n"
        "a plain caption;http://c;N;0.10;0.2;2\n"
        "another, with commas;http://d;RV;0.5;0.6;3\n"
    )
    ps = read_prompts(f, label_column="type", positive=["MV", "TV", "RV"])
    assert ps.prompts == ["The Long; Dark", "Living in the Light, with Ann", "a plain caption", "another, with commas"]
    assert ps.labels.tolist() == [True, True, False, True]
    assert list(ps.table.columns) == ["prompt", "URL", "type", "mean_sscd", "max_sscd", "Index"]
    assert ps.table.mean_sscd[0] == "0.91"  # kept as written
    with pytest.raises(ValueError, match="values other than 1/0.*--positive"):
        read_prompts(f, label_column="type")


def test_tsv_and_csv_with_binary_labels_and_splits(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_text("text\tmemorized\tsplit\na, b\t1\tdev\nc\t0\tdev\nd\ttrue\ttest\ne\tFalse\ttest\n")
    ps = read_prompts(f, label_column="memorized", split_column="split")
    assert ps.prompts == ["a, b", "c", "d", "e"]
    assert ps.labels.tolist() == [True, False, True, False] and ps.splits.tolist() == ["dev", "dev", "test", "test"]
    g = tmp_path / "p.csv"
    g.write_text('prompt,label\n"x, y",1\nz,0\n')
    assert read_prompts(g, label_column="label").labels.tolist() == [True, False]


def test_parquet_keeps_every_column(tmp_path):
    """Webster's parquets: a prompt column among others."""
    f = tmp_path / "p.parquet"
    pd.DataFrame({"caption": ODD, "overfit_type": ["MV", "N", "TV", "N"], "score": [0.9, 0.1, 0.8, 0.2]}).to_parquet(f)
    ps = read_prompts(f, label_column="overfit_type", positive=["MV", "TV"])
    assert ps.prompts == ODD and ps.labels.tolist() == [True, False, True, False]
    assert ps.table.score.tolist() == [0.9, 0.1, 0.8, 0.2]


def test_duplicates_are_reported_and_kept(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a\nb\na\na\n")
    ps = read_prompts(f)
    assert ps.prompts == ["a", "b", "a", "a"] and ps.duplicates == {"a": 3}
    assert "2 repeats of 1 prompts (kept)" in ps.describe()


def test_labelled_prompts_from_two_files(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"caption": "m1"}\n{"caption": "m2"}\n')
    (tmp_path / "o.txt").write_text("o1\no2\no3\n")
    ps = labelled_prompts(read_prompts(tmp_path / "m.jsonl"), read_prompts(tmp_path / "o.txt"))
    assert ps.prompts == ["m1", "m2", "o1", "o2", "o3"]
    assert ps.labels.tolist() == [True, True, False, False, False]
    assert ps.table.file.tolist() == ["m.jsonl"] * 2 + ["o.txt"] * 3


def test_uploaded_bytes_read_as_the_file_would(tmp_path):
    ps = read_prompts("upload.csv", data=b"prompt;label\na;1\nb;0\n", label_column="label")
    assert ps.prompts == ["a", "b"] and ps.labels.tolist() == [True, False]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("p.txt", b"", "p.txt holds no prompts"),
        ("p.txt", b"# only a comment\n\n", "holds no prompts"),
        ("p.jsonl", b"", "holds no prompts"),
        ("p.csv", b"", "holds no prompts"),
        ("p.txt", b"ok\n\xff\xfe\x00binary", "p.txt line 2 is not UTF-8 text"),
        ("p.txt", "ok\nnul\x00here\n".encode(), "line 2 holds a NUL byte"),
        ("p.jsonl", b'{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n', "p.jsonl line 2 is not JSON"),
        ("p.jsonl", b'{"prompt": "a"}\n["b"]\n', "line 2 is a JSON list"),
        ("p.jsonl", b'{"url": "a"}\n', "has no prompt column"),
        ("p.csv", b"url,score\nhttp://a,1\n", "has no prompt column \\(prompt, caption, text\\); its columns are url"),
        ("p.csv", b"prompt;type\na;b;c\n", "p.csv line 2 has 3 fields but the header has 2"),
        ("p.jsonl", b'{"prompt": 3}\n', "row 1 in 'prompt' is a number, not text"),
        ("p.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("p.docx", b"x", "must end in .txt, .jsonl"),
    ],
)
def test_a_bad_file_is_one_sentence_naming_it(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_prompts(f)
    assert "\n" not in str(info.value)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMVIZ_MAX_BYTES", "1K")
    f = tmp_path / "big.txt"
    f.write_text("a prompt\n" * 1000)
    with pytest.raises(ValueError, match="big.txt would take .* over the limit"):
        read_prompts(f)


def test_label_errors(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("prompt,label\na,1\nb,0\n")
    with pytest.raises(ValueError, match="no column 'lab'; its columns are prompt, label"):
        read_prompts(f, label_column="lab")
    with pytest.raises(ValueError, match="no value of 'label' is one of MV"):
        read_prompts(f, label_column="label", positive=["MV"])
    with pytest.raises(ValueError, match="give label_column too"):
        read_prompts(f, positive=["1"])
    assert np.array_equal(read_prompts(f, label_column="label", positive=["0"]).labels, [False, True])
