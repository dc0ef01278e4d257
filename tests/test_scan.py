"""A user's own model, data and prompts through every job: a copy of the text demo with its planted
lists removed stands in for the user's model; its planted captions as a Wen-format jsonl, ordinary
captions as a .txt, its training images as an image folder with metadata.jsonl."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import DEMO_MNIST_TEXT

DETS = ["wen", "asthana"]


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "memviz", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """(model folder, memorized.jsonl, ordinary.txt, data folder) of a user with no planted truth."""
    from memviz.data import training_data
    from memviz.data.captions import ordinary_captions, planted_prompts
    from memviz.model.loading import model_path

    root = tmp_path_factory.mktemp("user")
    model = root / "my-model"
    shutil.copytree(model_path(str(DEMO_MNIST_TEXT)), model, ignore=shutil.ignore_patterns("store", "eval*"))
    meta = json.loads((model / "memviz.json").read_text())
    table = meta["captions"]
    for key in ("planted", "captions", "data"):
        meta.pop(key, None)
    (model / "memviz.json").write_text(json.dumps(meta))
    memorized = root / "sdv1_500_memorized.jsonl"
    memorized.write_text(
        "\n".join(
            json.dumps({"caption": c, "index": i, "url": f"https://x/{i}"})
            for i, c in enumerate(planted_prompts(table))
        )
    )
    ordinary = root / "ordinary.txt"
    lines = [ordinary_captions(table, d, w)[0] for w in ("templates", "unseen_templates") for d in range(10)]
    ordinary.write_text("# ordinary captions\n" + "\n".join(lines) + "\n")
    train, _ = training_data(json.loads((DEMO_MNIST_TEXT / "memviz.json").read_text()))
    data = root / "data"
    data.mkdir()
    keep = np.r_[np.flatnonzero(train.meta["kind"] != "none"), np.flatnonzero(train.meta["kind"] == "none")[:150]]
    with open(data / "metadata.jsonl", "w") as f:
        for i in keep:
            pix = ((train.images[i, 0].numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            Image.fromarray(pix).save(data / f"img_{i:04d}.png")
            f.write(json.dumps({"file_name": f"./img_{i:04d}.png", "text": train.captions[i]}) + "\n")
    return model, memorized, ordinary, data


def test_eval_detection_on_user_labels_gives_the_demos_aurocs(user, tmp_path):
    """No planted truth needed: the same prompts (seeded by their text) give the demo's exact split."""
    model, memorized, ordinary, _ = user
    common = ["--detectors", *DETS, "--n", "2", "--steps", "1", "--reps", "2", "--no-progress"]
    mine = _cli("eval-detection", "--model", model, "--memorized", memorized, "--ordinary", ordinary,
                "--json", tmp_path / "mine.json", *common)  # fmt: skip
    assert mine.returncode == 0, mine.stderr
    demo = _cli("eval-detection", "--model", DEMO_MNIST_TEXT, "--json", tmp_path / "demo.json", *common)
    assert demo.returncode == 0, demo.stderr
    assert "asthana higher = memorized; wen higher = memorized" in mine.stdout
    rows = {r["detector"]: r for r in json.loads((tmp_path / "mine.json").read_text())}
    planted = {r["detector"]: r for r in json.loads((tmp_path / "demo.json").read_text()) if r["split"] == "exact"}
    assert set(rows) == set(DETS)
    for name in DETS:
        assert rows[name]["split"] == "all"
        assert rows[name]["n_pos"] == 22 and rows[name]["n_neg"] == 20  # the prompts read
        assert rows[name]["auroc"] == pytest.approx(planted[name]["auroc"], abs=1e-9)
    assert rows["wen"]["auroc"] > 0.9


def test_eval_detection_without_labels_or_with_too_few_says_so(user, tmp_path):
    model, memorized, _, _ = user
    r = _cli("eval-detection", "--model", model)
    assert r.returncode == 2 and "no planted ground truth; give your own labelled prompts" in r.stderr
    one = tmp_path / "one.csv"
    one.write_text(
        "prompt,label\nofficial portrait of the mayor at the harbour festival,1\na scanned two,0\na scanned one,0\n"
    )
    r = _cli("eval-detection", "--model", model, "--prompts", one, "--label-column", "label", "--detectors", "wen")
    assert (
        r.returncode == 2
        and "has 1 memorized and 2 ordinary prompts that can be scored; each needs at least 2" in r.stderr
    )
    assert "Traceback" not in r.stderr


def test_scan_flags_memorized_prompts_and_notes_the_unscoreable(user, tmp_path):
    model, memorized, ordinary, _ = user
    prompts = tmp_path / "mixed.csv"
    long = "word " * 300
    table = pd.DataFrame(
        {
            "caption": ["watercolor of a lighthouse on a stormy coast", "a scanned three", "", long, "a scanned three"],
            "source": ["wen", "mine", "mine", "mine", "dup"],
        }
    )
    table.to_csv(prompts, index=False)
    out = tmp_path / "scores.parquet"
    r = _cli("scan", "--model", model, "--prompts", prompts, "--reference", ordinary, "--out", out,
             "--detectors", *DETS, "--n", "2", "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "threshold: wen: flag above" in r.stdout and "higher = memorized" in r.stdout
    from memviz.detect.scan import read_scan

    got = read_scan(out)
    t = got.table
    assert list(t.columns[:3]) == ["prompt", "note", "source"]  # every column of the file kept
    assert t.prompt.tolist() == table.caption.tolist()
    assert t.note[2].startswith("not scored: an empty prompt") and np.isnan(t.wen[2])
    assert t.note[3].startswith("not scored: A prompt of 1,500 characters is too long")
    assert t.note[1] == "" and np.isfinite(t.wen[1])
    assert t.wen[1] == t.wen[4]  # the same prompt, the same score
    assert bool(t.flag_wen[0]) and not bool(t.flag_wen[1])  # the planted caption is flagged, the digit not
    assert got.thresholds["wen"]["direction"] == "above" and got.thresholds["wen"]["n_reference"] == 20
    assert got.settings["n"] == 2 and set(got.settings["detectors"]) == set(DETS)


def test_scan_judges_copies_against_the_users_data_naming_the_file(user, tmp_path):
    model, memorized, ordinary, data = user
    out = tmp_path / "scores.csv"
    r = _cli("scan", "--model", model, "--prompts", memorized, "--data", data, "--reference", ordinary,
             "--generate", "2", "--out", out, "--detectors", "wen", "--n", "2", "--sample-steps", "20",
             "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "scores.copies.png").is_file() and (tmp_path / "scores.csv.json").is_file()
    t = pd.read_csv(out, keep_default_na=False)
    judged = t[t.flagged.astype(str) == "True"]
    assert len(judged) > 0
    assert judged.nearest_file.str.match(r"img_\d{4}\.png").all()
    copied = judged[judged.copies.astype(float) > 0]
    assert len(copied) > 0  # the demo really memorizes its planted captions
    meta = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    caption_of = {m["file_name"][2:]: m["text"] for m in meta}
    own = sum(caption_of[f] == p for f, p in zip(copied.nearest_file, copied.prompt))
    assert own >= len(copied) // 2  # a planted caption's copies are of its own training image
    r = _cli("scan", "--model", model, "--prompts", memorized, "--data", data, "--reference", "training-captions",
             "--out", tmp_path / "t.csv", "--detectors", "wen", "--n", "2", "--no-progress")  # fmt: skip
    assert r.returncode == 0 and "reference prompts from training-captions (" in r.stdout


@pytest.mark.slow
def test_a_scan_killed_mid_way_resumes_to_the_clean_runs_table(user, tmp_path):
    """kill -9 mid-scan; the rerun scores only what is missing, and its table equals a clean run's."""
    model, memorized, ordinary, _ = user
    prompts = tmp_path / "many.txt"
    lines = memorized.read_text().splitlines()
    prompts.write_text("\n".join(json.loads(x)["caption"] for x in lines) + "\n" + ordinary.read_text())
    args = ["scan", "--model", model, "--prompts", prompts, "--detectors", "wen", "flipd_cond", "--n", "2",
            "--sample-steps", "10", "--batch-size", "1", "--no-progress"]  # fmt: skip
    cache = tmp_path / "cache"
    env = {**os.environ, "MEMVIZ_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "memviz", *map(str, args), "--out", tmp_path / "a.parquet"], env=env)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.glob("prompt_scores/*/part-*.npz"))) < 5:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.glob("prompt_scores/*/part-*.npz")))
    assert 5 <= done < 42
    r = _cli(*args, "--out", tmp_path / "a.parquet", env=env)
    assert r.returncode == 0, r.stderr
    assert f"reused {done} of 42 rows" in r.stderr
    keys = np.concatenate([np.load(f)["_key"] for f in cache.glob("prompt_scores/*/part-*.npz")])
    assert len(keys) == len(set(keys)) == 42  # no prompt scored twice
    clean = _cli(*args, "--out", tmp_path / "b.parquet", env={**os.environ, "MEMVIZ_CACHE": str(tmp_path / "c2")})
    assert clean.returncode == 0, clean.stderr
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_verdicts_without_held_out_images_say_so(user):
    import memviz

    model, _, _, data = user
    study = memviz.open_study(model, data, n=40)
    assert study.test is None
    text = study.threshold_source()
    assert "no held-out images" in text and "--holdout" in text
    held = memviz.open_study(model, data, n=40, holdout=data)
    assert "held-out images lie below it" in held.threshold_source()
