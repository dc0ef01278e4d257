"""Pure figure builders: data in, plotly figure out; no Streamlit."""

import numpy as np
import pytest

from memviz.figures.builders import flipd_curve_figure, map_figure, roc_figure, selected_indices


def test_flipd_curve_figure_marks_t0_and_lid_star():
    ts = np.array([0.01, 0.05, 0.2])
    fig = flipd_curve_figure(ts, {"uncond": [1.0, 2.0, 5.0], "cond": [0.5, 1.0, 4.0]}, t0=0.05, lid_star={"lpca": 3})
    assert [tr.name for tr in fig.data] == ["uncond", "cond"] and fig.layout.xaxis.type == "log"
    assert fig.layout.xaxis.dtick == "D2"  # readable: 1, 2 and 5 of each decade
    assert {s.y0 for s in fig.layout.shapes if s.y0 == s.y1} == {3.0} and any(s.x0 == 0.05 for s in fig.layout.shapes)
    with pytest.raises(ValueError, match="one value per t"):
        flipd_curve_figure(ts, {"bad": [1.0, 2.0]})


def test_map_figure_carries_global_indices_across_traces():
    xy, gen = np.random.default_rng(0).random((5, 2)), np.random.default_rng(1).random((2, 2))
    fig = map_figure(xy, color=np.arange(5.0), generated=gen, highlight=[1, 6], hover={"FLIPD": np.arange(5.0) / 2})
    assert fig.data[0].customdata[:, 0].tolist() == [0, 1, 2, 3, 4] and fig.data[1].customdata[:, 0].tolist() == [5, 6]
    assert fig.data[0].customdata[:, 2].tolist() == [0, 0.5, 1, 1.5, 2] and "FLIPD" in fig.data[0].hovertemplate
    np.testing.assert_allclose([fig.data[2].x[1], fig.data[2].y[1]], gen[1])  # the ring on generated point 6
    assert fig.layout.dragmode == "lasso" and fig.data[0].type == "scattergl"
    with pytest.raises(ValueError, match="one colour value"):
        map_figure(xy, color=np.arange(3))
    with pytest.raises(ValueError, match="one hover value"):
        map_figure(xy, hover={"x": np.arange(4)})


def test_map_figure_draws_one_trace_per_label_with_the_verdicts_own_colours():
    from memviz.figures.builders import VERDICT_COLOURS

    xy = np.random.default_rng(0).random((6, 2))
    verdicts = np.array(["DD-Mem", "not memorized", "OD-Mem", "not memorized", "zzz", "DD-Mem"], dtype=object)
    fig = map_figure(xy, color=verdicts, color_name="verdict", index=np.arange(100, 106))
    assert [t.name for t in fig.data] == ["DD-Mem", "OD-Mem", "not memorized", "zzz"]
    assert [t.marker.color for t in fig.data[:3]] == [
        VERDICT_COLOURS[v][0] for v in ("DD-Mem", "OD-Mem", "not memorized")
    ]
    assert fig.data[0].customdata[:, 0].tolist() == [0, 5] and fig.data[0].customdata[:, 1].tolist() == [100, 105]
    assert sorted(i for t in fig.data for i in t.customdata[:, 0]) == list(range(6))
    assert fig.layout.legend.y >= 1 and fig.layout.xaxis.showticklabels is False  # the legend sits above the plot


def test_a_map_of_many_points_draws_their_density_and_a_sample_with_every_rare_verdict():
    from memviz.figures.builders import DENSITY_BINS

    rng = np.random.default_rng(0)
    n = 30_000
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    verdicts = np.where(np.arange(n) < 60, "DD-Mem", "not memorized").astype(object)  # 0.2 %: rare
    fig = map_figure(xy, color=verdicts, color_name="verdict", highlight=[29_999], draw_max=2000)
    assert fig.layout.meta == {"total": n, "shown": n, "drawn": 2000}
    density = fig.data[0]
    assert density.type == "heatmap" and np.asarray(density.z).shape == (DENSITY_BINS, DENSITY_BINS)
    counts = np.histogram2d(xy[:, 0], xy[:, 1], bins=DENSITY_BINS)[0]
    np.testing.assert_allclose(np.nan_to_num(np.expm1(np.asarray(density.z, float)).T), counts, rtol=1e-4)  # all n
    drawn = np.concatenate([t.customdata[:, 0] for t in fig.data[1:] if t.type == "scattergl"]).astype(int)
    assert len(drawn) == len(set(drawn)) == 2000 and 29_999 in drawn and set(range(60)) <= set(drawn)
    dd = next(t for t in fig.data if t.name == "DD-Mem")
    np.testing.assert_allclose(np.c_[dd.x, dd.y], xy[dd.customdata[:, 0].astype(int)])  # each at its own place
    small = map_figure(xy[:1500], draw_max=2000)
    assert small.layout.meta["drawn"] == 1500 and all(t.type == "scattergl" for t in small.data)


def test_a_zoomed_map_draws_every_point_of_its_region():
    xy = np.random.default_rng(1).uniform(-10, 10, (20_000, 2))
    fig = map_figure(xy, color=xy[:, 0], region=(0, 2, -1, 1), draw_max=5000)
    inside = np.flatnonzero((xy[:, 0] >= 0) & (xy[:, 0] <= 2) & (xy[:, 1] >= -1) & (xy[:, 1] <= 1))
    assert fig.layout.meta == {"total": 20_000, "shown": len(inside), "drawn": len(inside)}
    assert sorted(fig.data[0].customdata[:, 0].astype(int)) == inside.tolist()
    assert tuple(fig.layout.xaxis.range) == (0, 2) and tuple(fig.layout.yaxis.range) == (-1, 1)


def test_a_box_or_lasso_selects_every_point_it_encloses_drawn_or_not():
    from memviz.figures.builders import points_in_selection

    xy = np.array([[0, 0], [1, 1], [2, 0.5], [5, 5], [0.5, 0.1]])
    box = {"box": [{"x": [1.5, -0.5], "y": [-0.2, 1.2]}], "lasso": []}
    assert points_in_selection(xy, box).tolist() == [0, 1, 4]
    triangle = {"lasso": [{"x": [-1, 2.8, -1], "y": [-1, -1, 2.8]}]}  # below the line x + y = 1.8
    assert points_in_selection(xy, triangle).tolist() == [0, 4]
    assert points_in_selection(xy, {"box": [], "lasso": [], "points": []}).tolist() == []
    assert points_in_selection(xy, None).tolist() == []


def test_selection_reads_customdata_not_per_trace_point_indices():
    event = {
        "points": [
            {"curve_number": 0, "point_index": 1, "customdata": [1]},
            {"curve_number": 1, "point_index": 1, "customdata": 6},
            {"curve_number": 1, "point_index": 0, "customdata": [5]},
            {"curve_number": 2, "point_index": 3, "customdata": {"0": 9, "1": 4321, "2": 0.5}},
        ]
    }
    assert selected_indices(event).tolist() == [1, 5, 6, 9]  # the last: a typed-array row, as a lasso returns it
    assert selected_indices({}).tolist() == [] and selected_indices(None).tolist() == []


def test_roc_figure():
    fig = roc_figure({"jeon": (np.array([0, 0, 1]), np.array([0, 1, 1]), 1.0)})
    assert fig.data[0].name == "jeon (AUROC 1.000)" and fig.data[1].name == "chance"


def test_cost_figure_puts_each_detector_at_its_cost_on_a_readable_log_axis():
    import pandas as pd

    from memviz.figures.builders import cost_figure

    rows = pd.DataFrame(
        {
            "detector": ["cheap", "dear"],
            "setting": ["", ""],
            "auroc": [0.9, 1.0],
            "auroc_low": [0.8, 0.7],
            "auroc_high": [1.0, 1.0],
            "seconds_per_query": [0.003, 0.6],
            "level": "prompt",
            "split": "exact",
            "n": 4,
            "steps": [1, 50],
        }
    )
    fig = cost_figure(rows)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.dtick == "D2"
    xs = sorted(x for tr in fig.data for x in tr.x)
    assert xs == [0.003, 0.6]


def test_pareto_figure_joins_a_sweeps_settings_and_marks_the_front():
    import pandas as pd

    from memviz.figures.builders import pareto_figure

    sweep = pd.DataFrame(
        {
            "method": ["none", "a", "a", "a", "b"],
            "knob": [None, 0.5, 0.1, 0.9, 2.0],
            "copy_rate": [1.0, 0.5, 0.9, 0.1, 0.6],
            "utility": [1.0, 0.8, 0.95, 0.4, 0.7],
            "seconds": [1.0] * 5,
            "model_calls": [10] * 5,
        }
    )
    fig = pareto_figure(sweep)
    traces = {t.name: t for t in fig.data}
    assert list(traces["a"].text) == ["a 0.1", "a 0.5", "a 0.9"] and "lines" in traces["a"].mode  # in knob order
    assert traces["none"].mode == "markers+text" and list(traces["none"].text) == ["none"]
    both = pareto_figure(sweep.assign(copy_rate=[1.0, 0.5, 0.9, 0.1, 0.5], utility=[1.0, 0.8, 0.95, 0.4, 0.8]))
    labels = {t.name: list(t.text) for t in both.data if t.name != "Pareto front"}
    assert labels["a"][1] == "a 0.5, b" and labels["b"] == [""]  # one label for coinciding points
    front = traces["Pareto front"]
    assert list(zip(front.x, front.y)) == [(0.4, 0.1), (0.8, 0.5), (0.95, 0.9), (1.0, 1.0)]  # b is dominated by a 0.5


def test_attribution_figure_shows_shares_in_prompt_order_with_the_dropped_words_red():
    from memviz.figures.builders import attribution_figure

    fig = attribution_figure([("the", 1.0), ("mayor", 6.0), ("the", 1.0), ("festival", 2.0)], dropped_at=[1, 2])
    bar = fig.data[0]
    assert list(bar.x) == ["1. the", "2. mayor", "3. the", "4. festival"]
    assert np.allclose(bar.y, [0.1, 0.6, 0.1, 0.2])
    assert bar.marker.color[1] == bar.marker.color[2] != bar.marker.color[0] == bar.marker.color[3]
