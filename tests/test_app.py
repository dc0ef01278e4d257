"""The app opens on the bundled demo and every page renders without an exception."""

import pytest
from streamlit.testing.v1 import AppTest

from memviz.detect import DETECTORS
from tests.conftest import DEMO_MNIST, DEMO_MNIST_TEXT, ROOT

pytestmark = pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)


def _page(page: str, **query: str) -> AppTest:
    """The app opened on ``page`` with these URL query parameters, checked for exceptions."""
    at = _app()
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize(
    "page", ["pages/overview.py", "pages/prompts.py", "pages/scan.py", "pages/manifold.py", "pages/detection.py"]
)
def test_every_page_renders_on_the_demo(page):
    at = _page(page)
    assert at.title[0].value


def test_overview_shows_the_planted_sets():
    at = _app().run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "duplicated images" in text and "planted prompt" in text
    assert [m.label for m in at.metric][:2] == ["Model", "Shape (C, H, W)"]
    verdicts = {
        m.label.split("[")[1].rstrip("]"): int(m.value.replace(",", "")) for m in at.metric if "verdict" in m.label
    }
    assert verdicts["DD-Mem"] == 10 and verdicts["OD-Mem"] >= 16  # every duplicated image; the 16 planted ones
    assert len(at.dataframe) == 2  # planted counts; the detection table
    assert ":red[DD-Mem]" in " ".join(m.label for m in at.metric)  # the verdict's one colour
    assert any("simplicity bias" in c.value for c in at.caption)
    at.toggle(key="per_class").set_value(True).run()  # one row of 8 per class
    grid = at.get("image")[-1]
    assert not at.exception and "per class" in grid.proto.imgs[0].caption


def test_prompts_page_reports_copies_for_a_planted_prompt():
    at = _app().run()
    at.switch_page("pages/prompts.py").run()
    at.multiselect[0].set_value(["memorized-00"]).run()
    assert not at.exception
    copies = at.metric[0].value  # "k / n"
    assert int(copies.split("/")[0]) >= 1


def test_prompts_page_compares_two_prompts_with_every_detector_and_keeps_them_in_the_url():
    at = _page("pages/prompts.py", prompts="3|memorized-05")
    assert at.multiselect[0].value == ["3", "memorized-05"]
    scores = at.dataframe[0].value.set_index("prompt")
    from memviz.detect.registry import serving
    from memviz.model.adapter import DiffusionModel

    served = {d.name for d in serving(DiffusionModel.from_pretrained("demo-mnist", device="cpu"))}
    assert {"copies", "seed"} | served <= set(scores.columns) and "asthana" in served  # the registry
    assert any("bright-ending reads the prompt's cross-attention" in c.value for c in at.caption)
    assert scores.loc["memorized-05", "jeon"] > scores.loc["3", "jeon"]  # the planted one is sharper
    assert scores.loc["memorized-05", "copies"] > scores.loc["3", "copies"]
    assert len(at.get("plotly_chart")) == 1  # the spectra, overlaid


def test_a_bad_model_path_is_one_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMVIZ_ROOTS", str(tmp_path))  # inside the allowed roots, but missing
    at = _app().run()
    at.sidebar.selectbox[0].set_value("Your own model folder…").run()
    at.sidebar.text_input[0].input(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_samples_page_shows_the_four_panels_and_keeps_the_training_row_in_the_url():
    from memviz.study.core import open_study

    study = open_study("demo-mnist", n=300)
    rows = study.rows
    outside = next(r for r in range(len(study.train)) if r not in set(rows))
    at = _page("pages/samples.py", n="300", sample="3", t0="0.1")  # an old link: the 4th analysed image
    assert at.number_input(key="row").value == rows[3]
    assert at.query_params["row"] in ([str(rows[3])], str(rows[3])) and "sample" not in at.query_params
    assert at.select_slider[1].value == 0.1 and "t0 = 0.1" in at.caption[0].value  # t0 from the URL
    assert at.query_params["model"] in (["demo-mnist"], "demo-mnist")
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # FLIPD curve, spectrum, map
    assert len(at.get("image")) == 3  # the grid, the sample, its neighbour strip
    assert len(at.get("download_button")) == 2 + 3 * 4 + 1  # table CSV/Parquet; each figure in four formats; the pack
    row = int(rows[5])
    at.number_input(key="row").set_value(row).run()
    assert not at.exception and at.subheader[0].value.startswith(f"Row {row}:")
    assert at.query_params["row"] in ([str(row)], str(row))
    at.button(key="next").click().run()  # one place along the sorted list
    order = at.dataframe[0].value["row"].tolist()
    assert not at.exception and at.number_input(key="row").value == order[order.index(row) + 1]
    at.button(key="prev").click().run()
    assert at.number_input(key="row").value == row
    at.number_input(key="row").set_value(outside).run()  # a training row outside the analysed 300
    assert not at.exception and at.subheader[0].value.startswith(f"Row {outside}:")
    at.selectbox[1].set_value("DD-Mem").run()  # filter by verdict: the duplicates
    assert not at.exception
    at.selectbox[0].set_value("copies in the training set (most first)").run()
    shown = at.dataframe[0].value
    assert not at.exception and "minus_copies" not in shown and shown.copies.iloc[0] == study.copies().max() > 1
    dup = int(shown.row.iloc[0])
    at.number_input(key="row").set_value(dup).run()
    assert any(f"×{study.copies([dup])[0]} in the training set" in m.value for m in at.markdown)
    n_dup = study.copies([dup])[0]
    strip = at.get("image")[2].proto.imgs[0].caption
    assert f"at 0.00 ×{n_dup}," in strip and strip.count("at 0.00") == 1  # its copies: one tile in the strip, not 8
    assert at.query_params["verdict"] in (["DD-Mem"], "DD-Mem") and at.query_params["sort"] in (
        ["minus_copies"],
        "minus_copies",
    )  # the filters travel with the link
    again = _page("pages/samples.py", **{k: at.query_params[k] for k in ("n", "row", "verdict", "sort")})
    assert again.selectbox[1].value == "DD-Mem" and again.selectbox[0].value.startswith("copies")
    assert again.number_input(key="row").value == dup
    verdict = at.subheader[0].value.split("-badge[")[1].split("]")[0]  # the verdict's badge; in words it agrees
    words = {"DD-Mem": "data-driven", "OD-Mem": "overfitting-driven", "not memorized": "not memorized."}[verdict]
    assert any(c.value.startswith("LID_theta") and words in c.value for c in at.caption)


def test_detection_page_draws_roc_curves_from_the_bundled_evaluation():
    at = _page("pages/detection.py", level="prompt")
    assert len(at.get("plotly_chart")) == 2  # AUROC against seconds; ROC curves
    table = at.dataframe[0].value
    assert set(table.level) == {"prompt"} and list(dict.fromkeys(table.detector)) == [
        d for d in DETECTORS if d in set(table.detector)
    ]  # in the registry's order
    best = table[(table.detector == "nn_distance") & (table.n == 4)]
    assert (best.auroc == 1.0).all() and table.auroc.min() < 1.0  # the bundled evaluation's figures
    at.selectbox[0].set_value("sample").run()
    assert not at.exception and set(at.dataframe[0].value.level) == {"sample"}


def test_own_data_is_checked_against_the_model(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setenv("MEMVIZ_ROOTS", str(tmp_path))
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "fits.npz", images=rng.integers(0, 255, (40, 1, 16, 16), dtype=np.uint8), labels=np.arange(40) % 10
    )
    np.savez(tmp_path / "wrong.npz", images=rng.integers(0, 255, (40, 3, 32, 32), dtype=np.uint8))
    at = _app().run()
    at.sidebar.text_input(key="data_path").input(str(tmp_path / "wrong.npz")).run()
    assert not at.exception
    assert any("expects (1, 16, 16)" in e.value for e in at.error)
    at.sidebar.text_input(key="data_path").input(str(tmp_path / "fits.npz")).run()
    assert not at.exception and not at.error
    assert any("Training data: 40 images" in s.value for s in at.subheader)


def test_a_stable_diffusion_folder_with_own_data_compares_free_text_prompts(tmp_path, monkeypatch):
    """The workspace picker takes a text-to-image pipeline folder and image data at the VAE's
    pixel size; the Prompts page takes free text, scores it in latent space, and keeps it in the URL."""
    import numpy as np

    monkeypatch.setenv("MEMVIZ_ROOTS", str(tmp_path))
    from tests.test_sd import build_tiny_sd

    pipe = build_tiny_sd(tmp_path / "sd")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "own.npz", images=rng.integers(0, 255, (60, 3, 16, 16), dtype=np.uint8))
    at = _app().run()
    at.sidebar.selectbox[0].set_value("Your own model folder…").run()
    at.sidebar.text_input(key="model_path").input(str(pipe)).run()
    at.sidebar.text_input(key="data_path").input(str(tmp_path / "own.npz")).run()
    assert not at.exception and not at.error
    at.switch_page("pages/prompts.py").run()
    at.text_area[0].input("a red door\nthe blue sky").run()
    at.slider[0].set_value(2).run()  # two generations per prompt
    at.slider[1].set_value(5).run()  # five steps
    assert not at.exception, at.exception
    assert len(at.dataframe), [e.value for els in (at.info, at.error, at.warning, at.caption) for e in els]
    scores = at.dataframe[0].value.set_index("prompt")
    assert list(scores.index) == ["a red door", "the blue sky"]
    assert scores[["wen", "jeon", "flipd_cond", "calibrated_l2"]].notna().all().all()
    assert at.query_params["prompts"] in (["a red door|the blue sky"], "a red door|the blue sky")


@pytest.mark.skipif(not (ROOT / "assets" / "models" / "demo-mnist-text").exists(), reason="no text demo")
def test_text_demo_prompts_page_takes_free_text_from_the_url():
    at = _page(
        "pages/prompts.py",
        model="demo-mnist-text",
        prompts="watercolor of a lighthouse on a stormy coast|nine scribbled on paper",
    )
    assert at.text_area[0].value.splitlines() == [
        "watercolor of a lighthouse on a stormy coast",
        "nine scribbled on paper",
    ]
    scores = at.dataframe[0].value.set_index("prompt")
    planted, free = scores.index
    assert scores.loc[planted, "copies"] > scores.loc[free, "copies"]  # the planted caption copies
    assert scores.loc[planted, "jeon"] > scores.loc[free, "jeon"]  # and is sharper


def test_mitigation_page_shows_plain_and_mitigated_generations_and_the_pareto_plot():
    at = _page("pages/mitigation.py", prompts="memorized-00|3")
    assert at.multiselect[0].value == ["memorized-00", "3"]
    rows = at.dataframe[0].value
    assert {"none", "guidance-schedule", "initial-noise"} <= set(rows.method)  # the registry
    assert "random-tokens" not in set(rows.method) and any("random-tokens" in c.value for c in at.caption)
    plain = rows[(rows.prompt == "memorized-00") & (rows.method == "none")].iloc[0]
    assert plain.copy_rate == 1.0 and plain.flagged and not rows[rows.prompt == "3"].flagged.any()
    assert len(at.get("plotly_chart")) == 1 and len([m for m in at.metric if m.label == "Copies"]) == 2 * len(
        set(rows.method)
    )
    kinds = [c.value for c in at.caption if c.value.startswith("What its training rows plant")]
    assert "(OD-Mem)" in kinds[0] and "among the prompt's ordinary images" in kinds[1]
    assert any("x_T moved" in c.value for c in at.caption)  # initial-noise-opt's own figure
    assert any("Scoring the prompts took" in c.value and "UNet calls" in c.value for c in at.caption)  # the gate's cost


def test_mitigation_page_reads_its_settings_from_the_link_and_sweeps_a_knob_on_request():
    at = _page(
        "pages/mitigation.py",
        prompts="memorized-00|3",
        methods="guidance-schedule|nonsense",
        n="2",
        steps="10",
        gate="none",
    )
    assert at.multiselect[1].value == ["guidance-schedule"] and [s.value for s in at.slider] == [2, 10]
    assert [b.value for b in at.selectbox if b.label == "Gate"] == ["none"]
    assert at.query_params["methods"] in (["guidance-schedule"], "guidance-schedule")  # what was run
    assert set(at.dataframe[0].value.method) == {"none", "guidance-schedule"}
    assert any("nothing to withhold" in c.value for c in at.caption)  # the demos sample at w = 1
    assert len(at.get("plotly_chart")) == 1  # the sweep waits to be asked
    at.toggle(key="sweep").set_value(True).run()
    assert not at.exception, at.exception
    table = at.dataframe[1].value
    assert list(table.method) == ["none"] + ["guidance-schedule"] * 5 and table.front.any()
    assert len(at.get("plotly_chart")) == 2


def _small_list() -> bytes:
    """Three planted captions of the text demo and three ordinary ones, labelled in a ``memorized`` column."""
    import csv
    import io

    from memviz.data.captions import OD_CAPTIONS, ordinary_captions

    meta = {"words": ["zero", "one", "two", "three"], "templates": ["a handwritten digit {word}"]}
    rows = [(c, "1") for c in OD_CAPTIONS[:3]] + [(ordinary_captions(meta, d)[0], "0") for d in (1, 2, 3)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([("prompt", "memorized"), *rows])
    return buf.getvalue().encode()


@pytest.mark.skipif(not DEMO_MNIST_TEXT.exists(), reason="no text demo")
def test_scan_page_scores_an_uploaded_list_flags_it_against_a_reference_and_opens_a_row_on_the_prompts_page():
    at = _page("pages/scan.py", model="demo-mnist-text", detectors="wen|asthana", n="2")
    assert at.selectbox(key="scan_example").value.startswith("Planted captions")  # the demo's example lists
    assert at.multiselect(key="scan_detectors").value == ["wen", "asthana"] and at.slider(key="scan_n").value == 2
    at.file_uploader(key="scan_file").set_value(("mine.csv", _small_list(), "text/csv")).run()
    assert not at.exception and not at.error
    assert any("6 prompts from mine.csv; 3 labelled memorized by 'memorized'" in c.value for c in at.caption)
    assert at.selectbox[1].value == "memorized"  # the label column, guessed from its name
    at.selectbox(key="scan_reference").set_value("none").run()
    at.button(key="scan_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 6 and table[["wen", "asthana"]].notna().all().all() and "note" in table
    assert "flagged" not in table and not any("flag above" in m.value for m in at.markdown)
    assert table.wen[:3].mean() > table.wen[3:].mean()  # the planted captions score higher
    assert len(at.get("plotly_chart")) == 1  # ROC curves from the label column
    assert len(at.get("download_button")) == 2 + 4  # the table as CSV and Parquet; the ROC figure
    at.selectbox(key="scan_reference").set_value("the ordinary prompts of this file").run()
    assert any("press Scan" in i.value for i in at.info)  # the settings changed: nothing stale is shown
    at.button(key="scan_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert {"flag_wen", "flag_asthana", "flagged"} <= set(table.columns)
    assert not table.flagged[3:].any() and table.flag_wen[:3].any()  # thresholds above every ordinary score
    lines = " ".join(m.value for m in at.markdown)
    assert "wen: flag above" in lines and "higher = memorized" in lines and "3 reference prompts" in lines
    at.session_state["scan_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}  # pick a row
    at.run()
    link = at.page_link[-1]
    assert not at.exception and link.proto.page == "prompts" and link.value.endswith(table.prompt[1])
    from urllib.parse import parse_qs

    query = parse_qs(link.proto.query_string)
    assert query == {"prompts": [table.prompt[1]], "model": ["demo-mnist-text"]}
    at.file_uploader(key="scan_file").set_value(("bad.csv", b"prompt,memorized\na,b,c\n", "text/csv")).run()
    assert not at.exception and [e.value for e in at.error] == [
        "bad.csv line 2 has 3 fields but the header has 2 (','-separated); quote fields that hold ','."
    ]


@pytest.mark.skipif(not DEMO_MNIST_TEXT.exists(), reason="no text demo")
def test_prompts_page_says_how_many_lines_it_dropped_and_points_to_the_scan_page():
    lines = ["watercolor of a lighthouse on a stormy coast", "a scanned two", "a scanned three", "a scanned four"]
    at = _page("pages/prompts.py", model="demo-mnist-text", prompts="|".join(lines + ["a scanned five", "x"]))
    assert [w.value for w in at.warning] == [
        "This page compares at most 4 prompts side by side: the last 2 lines were dropped. Score a longer list "
        "on the Scan page, then open any of its prompts here."
    ]
    assert at.page_link[0].proto.page == "scan"
    assert list(at.dataframe[0].value.prompt) == lines


def test_overview_builds_the_audit_report_and_offers_it_as_html_and_pdf():
    """The report of the model in view: Build, then the downloads (HTML, and PDF where Chromium is)."""
    import shutil

    at = _app().run()
    at.button(key="report_go").click().run()
    assert not at.exception, at.exception
    downloads = [e for e in at.get("download_button")]
    labels = [e.proto.label for e in downloads]
    assert "Download report (HTML)" in labels
    if shutil.which("chromium"):
        assert "Download report (PDF)" in labels


def test_the_manifold_maps_every_training_image():
    at = _page("pages/manifold.py", model="demo-mnist", points="every training image")
    charts = list(at.get("plotly_chart"))  # the map's title names the distinct images, not the analysed ones
    assert charts and "distinct training images" in charts[0].proto.spec and not at.error
