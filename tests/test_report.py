"""The audit report: its numbers are the store's, it opens offline in a real browser with every network
request refused, its PDF prints as pages a person can read, and a user's own model (no planted truth)
gets sections that say what is unknown."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import DEMO_MNIST_TEXT

DETS = ["wen", "asthana"]
KW = dict(n=2, steps=1, k=2, sample_steps=10, detectors=DETS, progress=False)


@pytest.fixture(scope="module")
def text_report(tmp_path_factory):
    """(study, labelled prompts, Report, html path, pdf path) of the text demo with 4 planted captions in a
    Wen-format jsonl and 4 ordinary ones in a .txt, scanned with two first-step detectors."""
    from memviz.data.captions import ordinary_captions, planted_prompts
    from memviz.data.prompt_sets import labelled_prompts, read_prompts
    from memviz.report import build_report, write_report
    from memviz.study.core import open_study

    root = tmp_path_factory.mktemp("report")
    study = open_study(str(DEMO_MNIST_TEXT))
    table = study.model.meta["captions"]
    memorized = root / "sdv1_500_memorized.jsonl"
    memorized.write_text(
        "\n".join(json.dumps({"caption": c, "index": i}) for i, c in enumerate(planted_prompts(table)[:4]))
    )
    ordinary = root / "ordinary.txt"
    ordinary.write_text("\n".join(ordinary_captions(table, d, "templates")[0] for d in range(4)) + "\n")
    prompts = labelled_prompts(read_prompts(memorized), read_prompts(ordinary))
    rep = build_report(study, prompts=prompts, **KW)
    html, pdf = write_report(rep, root / "report.html"), write_report(rep, root / "report.pdf")
    return study, prompts, rep, html, pdf


def test_numbers_equal_the_stored_tables(text_report):
    from memviz.detect.evaluate import eval_detection
    from memviz.lid.verdict import VERDICTS

    study, prompts, rep, html, _ = text_report
    text = html.read_text()
    counts = study.table().verdict.value_counts().reindex(list(VERDICTS), fill_value=0)
    assert rep.headline["verdicts"] == {k: int(v) for k, v in counts.items()}
    assert rep.headline["training_analysed"] == len(study.rows) == 600
    embedded = json.loads(re.search(r'id="memviz-numbers">(.*?)</script>', text, re.S).group(1))
    assert embedded == json.loads(json.dumps(rep.headline))
    # the planted truth: every planted image memorized, and of its own kind
    assert rep.headline["planted"]["DD-Mem"]["DD-Mem"] == 10 and rep.headline["planted"]["OD-Mem"]["OD-Mem"] == 16
    # the detection table is eval-detection's on the same labels, read from the scan's store
    rows = eval_detection(
        study, n=[2], steps=[1], reps=1, sample_steps=10, labelled=prompts, names=DETS, progress=False
    )
    for r in rows:
        got = rep.detection[rep.detection.detector == r["detector"]].iloc[0]
        assert got.auroc == pytest.approx(r["auroc"]) and got.n_pos == 4 and got.n_neg == 4
        assert f"{r['auroc']:.3f}" in text
    # flags: the table's flags, at the thresholds set on the ordinary prompts
    scan = rep.scan_table
    assert rep.headline["prompts"] == 8 and rep.headline["prompts_flagged"] == int(scan.flagged.sum())
    assert scan.flagged[:4].all(), "the text demo's planted captions are flagged by the first step alone"
    assert rep.headline["generations"] == 2 * int(scan.flagged.sum())
    assert rep.headline["generations_copying"] == int(scan.copies.sum()) > 0
    assert {"map", "spectra", "roc", "cost"} <= set(rep.figures)
    for section in ("1. Summary", "2. Model and data", "3. Memorized", "4. Prompt scan", "5. Detection",
                    "6. Mitigation", "7. Methods", "8. Glossary"):  # fmt: skip
        assert section in text
    assert "memviz scan --model" in text and "torch" in text and "Unknown (mitigation)" in text


def test_the_report_opens_offline_in_chromium_with_every_request_refused(text_report):
    from playwright.sync_api import sync_playwright

    _, _, rep, html, _ = text_report
    failed, errors, asked = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()

        def refuse(route):
            url = route.request.url
            if url.startswith(("data:", html.as_uri())):
                route.continue_()
            else:  # anything else the page asked for would fail offline
                asked.append(url)
                route.abort()

        page.route("**/*", refuse)
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        svgs = page.eval_on_selector_all("figure svg", "els => els.length")
        browser.close()
    assert asked == [] and failed == [] and errors == []
    assert len(images) >= 2 * len(rep.memorized) and all(images)
    assert svgs >= len(rep.figures)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_the_pdf_prints_readable_pages_in_order(text_report, tmp_path):
    from PIL import Image

    _, _, rep, _, pdf = text_report
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 4 <= len(pages) <= 30
    for page in pages:  # every page holds something (a blank page means a broken break)
        grey = np.asarray(Image.open(page).convert("L"), dtype=float)
        assert grey.std() > 5 and (grey < 128).mean() > 0.002
        assert grey.shape[0] > grey.shape[1]  # A4, portrait
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    at = [text.find(s) for s in ("1. Summary", "3. Memorized", "4. Prompt scan", "5. Detection", "8. Glossary")]
    assert -1 not in at and at == sorted(at)
    assert rep.summary.split(";")[0] in " ".join(text.split())


def test_a_mitigation_run_is_its_table_and_front(text_report, tmp_path):
    from memviz.report import build_report, to_html

    study, *_ = text_report
    rows = [  # prompt b has no label to keep: its utility is NaN, with the reason
        {"prompt": p, "method": m, "knob": None, "copy_rate": c, "utility": u if p == "a" else float("nan"),
         "seconds": 1.0, "model_calls": 10, "utility_note": "" if p == "a" else "no label"}
        for p in ("a", "b") for m, c, u in (("none", 1.0, 0.5), ("sail", 0.25, 0.75))
    ]  # fmt: skip
    (tmp_path / "report.json").write_text(json.dumps({"n": 4, "seed": 0, "steps": 50, "rows": rows}))
    rep = build_report(study, mitigation=tmp_path, progress=False)
    assert rep.mitigation.set_index("method").copy_rate.to_dict() == {"none": 1.0, "sail": 0.25}
    assert rep.mitigation.set_index("method").prompts.to_dict() == {"none": 2, "sail": 2}
    assert rep.mitigation.set_index("method").utility.to_dict() == {"none": 0.5, "sail": 0.75}
    assert "pareto" in rep.figures and "from 100% without mitigation" in rep.summary
    assert any("no label" in n for n in rep.notes) and "Unknown (scan)" in to_html(rep)
    with pytest.raises(ValueError, match="report.json"):
        build_report(study, mitigation=tmp_path / "nothing", progress=False)


def test_a_users_own_model_says_what_is_unknown(tmp_path):
    """No planted truth, no held-out images, no prompts: the sections say so instead of vanishing."""
    from memviz.data import training_data
    from memviz.model.loading import model_path
    from memviz.report import build_report, to_html
    from memviz.study.core import open_study

    model = tmp_path / "my-model"
    shutil.copytree(model_path(str(DEMO_MNIST_TEXT)), model, ignore=shutil.ignore_patterns("store", "eval*"))
    meta = json.loads((model / "memviz.json").read_text())
    train, _ = training_data(meta)
    for key in ("planted", "captions", "data"):
        meta.pop(key, None)
    (model / "memviz.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "data.npz", images=train.images[:300].numpy(), captions=np.array(train.captions[:300]))
    study = open_study(model, tmp_path / "data.npz", n=24)
    rep = build_report(study, progress=False)
    text = to_html(rep)
    assert "planted" not in rep.headline and rep.headline["held_out_images"] == 0
    assert "whatever the model" in rep.summary and "--holdout" in rep.summary
    for section in ("scan", "detection", "mitigation"):
        assert section in rep.unknown and f"Unknown ({section})" in text
    assert "no prompt list was scanned" in rep.summary
    assert sum(rep.headline["verdicts"].values()) == 24


def test_cli_writes_a_report_and_refuses_a_bad_suffix(tmp_path):
    out = tmp_path / "r.html"
    done = subprocess.run(
        [sys.executable, "-m", "memviz", "report", "--model", "demo-mnist", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000 and "training images are memorized" in done.stdout
    assert "unknown (scan)" in done.stderr and "Traceback" not in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "memviz", "report", "--model", "demo-mnist", "--out", str(tmp_path / "r.docx")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "is a .html or .pdf" in bad.stderr and "Traceback" not in bad.stderr
