"""The series kind on small real slices of NAB and SKAB: one scored row per input row, causal
scores, streaming detection that does not look ahead, point-wise figures against labels, the
channels that explain a score, and one-line errors for bad streams."""

import json

import numpy as np
import pandas as pd
import pytest

from vaekit.cli import main

from conftest import one_line_error, shared, vaekit_cli

FAST = ["--kind", "series", "--hidden", "32,32", "--latent-dim", "4", "--min-steps", "200", "--epochs", "5",
        "--precision", "fp32", "--quiet"]


@pytest.fixture(scope="module")
def taxi(tmp_path_factory):
    """NAB's nyc_taxi, its first 1,200 rows (30-minute steps)."""
    source = shared("nab/realKnownCause/nyc_taxi.csv", "NAB")
    path = tmp_path_factory.mktemp("nab") / "taxi.csv"
    pd.read_csv(source, dtype=str).head(1200).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def valve(tmp_path_factory):
    """SKAB's valve1/0.csv as distributed (semicolons, 8 channels, labels)."""
    return shared("skab/valve1/0.csv", "SKAB")


@pytest.fixture(scope="module")
def taxi_run(taxi, tmp_path_factory):
    """The taxi counts by their level (the season's own test below compares them with a day earlier)."""
    out = tmp_path_factory.mktemp("series") / "run"
    assert main(["train", "--data", str(taxi), *FAST, "--train-rows", "800", "--season", "none", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def valve_run(valve, tmp_path_factory):
    out = tmp_path_factory.mktemp("series") / "valve"
    assert main(["train", "--data", str(valve), *FAST, "--train-rows", "400", "--out", str(out)]) == 0
    return out


def scores(path):
    return pd.read_csv(path)


def picture_size(path):
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
        return image.size


def test_training_lowers_the_loss_and_calibrates_on_training_rows(taxi_run):
    records = [json.loads(line) for line in (taxi_run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]
    cal = json.loads((taxi_run / "calibration.json").read_text())
    assert cal["num_scores"] > 600 and cal["quantiles"] == sorted(cal["quantiles"])


def test_anomaly_gives_one_causal_row_per_input_row(taxi_run, taxi, tmp_path):
    assert main(["anomaly", str(taxi_run), "--data", str(taxi), "--out", str(tmp_path / "all.csv")]) == 0
    rows = scores(tmp_path / "all.csv")
    data = pd.read_csv(taxi)
    assert list(rows.columns) == ["timestamp", "anomaly_score", "flagged"] and len(rows) == len(data)
    assert rows["timestamp"].tolist() == data["timestamp"].tolist()
    assert rows["anomaly_score"].between(0, 1).all() and set(rows["flagged"]) <= {0, 1}
    assert rows["flagged"].tolist() == (rows["anomaly_score"] > 0.99).astype(int).tolist()
    assert picture_size(tmp_path / "all.png") == (1000, 300)  # beside the CSV: the channel, then the scores
    # The score of row t sees rows up to t only: the file cut after row 500 scores its rows alike.
    data.head(500).to_csv(tmp_path / "head.csv", index=False)
    assert main(["anomaly", str(taxi_run), "--data", str(tmp_path / "head.csv"), "--out", str(tmp_path / "h.csv")]) == 0
    assert np.allclose(scores(tmp_path / "h.csv")["anomaly_score"], rows["anomaly_score"][:500], atol=1e-9)
    # About the asked share of the training rows is flagged.
    assert rows["flagged"][:800].mean() < 0.05


def test_detect_is_deterministic_and_never_looks_ahead(taxi, tmp_path):
    args = ["--kind", "series", "--probation", "200", "--seed", "3"]
    assert main(["detect", "--data", str(taxi), *args, "--out", str(tmp_path / "a.csv")]) == 0
    a = scores(tmp_path / "a.csv")
    assert len(a) == 1200 and (a["anomaly_score"][:200] == 0).all()
    assert picture_size(tmp_path / "a.png") == (1000, 300)
    assert a["anomaly_score"][200:].between(0, 1).all() and a["anomaly_score"][200:].std() > 0.05
    # The first half alone, in another run with the same seed, scores the same, through a refit
    # (at rows 200 and 400): deterministic, and no row's score sees the rows after it.
    pd.read_csv(taxi, dtype=str).head(600).to_csv(tmp_path / "half.csv", index=False)
    assert main(["detect", "--data", str(tmp_path / "half.csv"), *args, "--out", str(tmp_path / "h.csv")]) == 0
    assert scores(tmp_path / "h.csv").equals(a.head(600))
    # The same with the squared error averaged over the last 4 rows, across refits.
    smooth = [*args, "--score", "recon_error", "--smooth", "4"]
    assert main(["detect", "--data", str(tmp_path / "half.csv"), *smooth, "--out", str(tmp_path / "s.csv")]) == 0
    pd.read_csv(taxi, dtype=str).head(450).to_csv(tmp_path / "part.csv", index=False)
    assert main(["detect", "--data", str(tmp_path / "part.csv"), *smooth, "--out", str(tmp_path / "p.csv")]) == 0
    s, part = scores(tmp_path / "s.csv"), scores(tmp_path / "p.csv")
    assert part.equals(s.head(450)) and not s["anomaly_score"].equals(a["anomaly_score"].head(600))


def test_detect_scores_a_folder_alike_in_worker_processes_and_checks_every_file_first(taxi, tmp_path):
    folder = tmp_path / "streams"
    (folder / "sub").mkdir(parents=True)
    data = pd.read_csv(taxi, dtype=str)
    data.iloc[:300].to_csv(folder / "a.csv", index=False)
    data.iloc[300:560].to_csv(folder / "sub" / "b.csv", index=False)
    args = ["detect", "--data", str(folder), "--kind", "series", "--probation", "150"]
    assert main([*args, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    for name in ("a.csv", "sub/b.csv"):
        one, two = scores(tmp_path / "one" / name), scores(tmp_path / "two" / name)
        assert one.equals(two) and len(one) in (300, 260) and one["anomaly_score"][150:].std() > 0
        assert (tmp_path / "two" / name).with_suffix(".png").exists()
    # A bad file anywhere in the folder is refused before any file is scored.
    data.iloc[:100].assign(value="x").to_csv(folder / "sub" / "c.csv", index=False)
    one_line_error(vaekit_cli(*args, "--out", tmp_path / "bad"), "c.csv", "not numeric")
    assert not (tmp_path / "bad").exists()


def test_several_channels_name_the_culprits_and_labels_give_figures(valve, valve_run, tmp_path, capsys):
    run = valve_run
    assert main(["anomaly", str(run), "--data", str(valve), "--out", str(tmp_path / "s.csv")]) == 0
    rows = scores(tmp_path / "s.csv")
    channels = {"Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
                "Voltage", "Volume Flow RateRMS"}
    assert list(rows.columns) == ["datetime", "anomaly_score", "flagged", "top_columns"]
    named = [set(t.split(";")) for t in rows["top_columns"]]
    assert all(n and n <= channels for n in named)
    assert picture_size(tmp_path / "s.png") == (1000, 1350)  # a panel per channel, then the scores
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(valve), "--label-col", "anomaly", "--json", "--iw-samples", "0",
                 "--quiet"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert {"f1", "far", "mar", "auroc", "average_precision"} <= figures.keys()
    assert 0.5 < figures["auroc"] <= 1 and 0 <= figures["far"] <= 100 and 0 <= figures["mar"] <= 100
    assert figures["tp"] + figures["fn"] == int(pd.read_csv(valve, sep=";")["anomaly"].sum())
    # The squared error, averaged over the last 5 rows: calibrated on the training rows, causal.
    smooth = ["--score", "recon_error", "--smooth", "5"]
    assert main(["anomaly", str(run), "--data", str(valve), "--out", str(tmp_path / "e.csv"), *smooth]) == 0
    error = scores(tmp_path / "e.csv")
    assert error["anomaly_score"].between(0, 1).all() and not error["anomaly_score"].equals(rows["anomaly_score"])
    assert error["flagged"][:400].mean() < 0.05
    pd.read_csv(valve, sep=";").head(300).to_csv(tmp_path / "head.csv", sep=";", index=False)
    assert main(["anomaly", str(run), "--data", str(tmp_path / "head.csv"), "--out", str(tmp_path / "h.csv"), *smooth]) == 0
    assert np.allclose(scores(tmp_path / "h.csv")["anomaly_score"], error["anomaly_score"][:300], atol=1e-9)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(valve), "--label-col", "anomaly", "--json", "--iw-samples", "0",
                 "--quiet", *smooth]) == 0
    assert figures != (smoothed := json.loads(capsys.readouterr().out))
    assert smoothed["tp"] + smoothed["fn"] == figures["tp"] + figures["fn"] and 0.5 < smoothed["auroc"] <= 1


def test_several_channels_score_their_worst_channel_in_held_out_units(valve, valve_run, taxi_run, tmp_path):
    """By default a run of several channels scores each row by its worst channel's squared error in
    units of that channel's error on the held-out training rows, over 8 rows; a lone channel by
    its likelihood. A fault in one channel is named first and alarms."""
    from vaekit.checkpoint import open_run
    from vaekit.kinds.series.model import point_scores

    cal = json.loads((valve_run / "calibration.json").read_text())
    assert (cal["score"], cal["smooth"]) == ("worst_channel", 8)
    run = open_run(str(valve_run))
    held = point_scores(run.vae, run.splits().val_x, "recon_error").numpy()  # the file's rows 360-399
    assert len(held) == 40
    assert np.allclose(cal["channel_centre"], np.median(held, 0), rtol=1e-4, atol=1e-6)
    assert np.allclose(cal["channel_spread"], held.std(0), rtol=1e-4, atol=1e-6)
    assert json.loads((taxi_run / "calibration.json").read_text())["score"] == "neg_elbo"
    data = pd.read_csv(valve, sep=";")
    spread = data["Pressure"][:400].std()
    data.loc[700:729, "Pressure"] += 8 * spread  # a step in one channel for 30 rows
    data.to_csv(tmp_path / "fault.csv", sep=";", index=False)
    args = ["anomaly", str(valve_run), "--data", str(tmp_path / "fault.csv")]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 0
    default = scores(tmp_path / "a.csv")
    explicit = ["--score", "worst_channel", "--smooth", "8"]
    assert main([*args, "--out", str(tmp_path / "b.csv"), *explicit]) == 0
    assert default.equals(scores(tmp_path / "b.csv"))
    fault = default.iloc[703:730]  # 8-row means from 4 rows into the step
    assert (fault["flagged"] == 1).all() and (fault["top_columns"].str.split(";").str[0] == "Pressure").all()
    assert default["flagged"][:400].mean() < 0.05
    # detect scores several channels the same way, each refit standardised on its own held-out rows.
    data.head(560).to_csv(tmp_path / "head.csv", sep=";", index=False)
    args = ["detect", "--data", str(tmp_path / "head.csv"), "--kind", "series", "--probation", "400"]
    assert main([*args, "--out", str(tmp_path / "d.csv")]) == 0
    assert main([*args, *explicit, "--out", str(tmp_path / "e.csv")]) == 0
    streamed = scores(tmp_path / "d.csv")
    assert streamed.equals(scores(tmp_path / "e.csv")) and (streamed["anomaly_score"][:400] == 0).all()
    assert streamed["anomaly_score"][400:].std() > 0 and streamed["top_columns"][400:].str.len().gt(0).all()


def test_a_channel_that_wanders_is_modelled_by_its_changes(valve, valve_run, tmp_path):
    """The rig's temperatures wander over an experiment; warmed by 5 of their training spreads over
    170 rows, modelled by their levels they alarm, by their changes (auto) they do not."""
    schema = json.loads((valve_run / "schema.json").read_text())
    assert {"Temperature", "Thermocouple"} <= set(schema["changes"]) and "Pressure" not in schema["changes"]
    frame = pd.read_csv(valve, sep=";").head(570)  # its fault starts at row 573
    for c in ("Temperature", "Thermocouple"):
        frame.loc[400:, c] += np.linspace(0, 5, 170) * frame[c][:400].std()
    frame.to_csv(tmp_path / "warm.csv", sep=";", index=False)
    levels = tmp_path / "levels"
    assert main(["train", "--data", str(valve), *FAST, "--train-rows", "400", "--changes", "none", "--out",
                 str(levels)]) == 0
    assert json.loads((levels / "schema.json").read_text())["changes"] == []
    flagged = {}
    for name, run in (("changes", valve_run), ("levels", levels)):
        assert main(["anomaly", str(run), "--data", str(tmp_path / "warm.csv"), "--out", str(tmp_path / "s.csv")]) == 0
        flagged[name] = scores(tmp_path / "s.csv")["flagged"][400:].mean()
    assert flagged["changes"] < 0.06 and flagged["levels"] > 3 * flagged["changes"] + 0.1, flagged
    assert main(["reconstruct", str(valve_run), "--data", str(valve), "--out", str(tmp_path / "r.csv")]) == 0
    rebuilt = pd.read_csv(tmp_path / "r.csv")
    assert {"Temperature (change)", "Temperature (change)_reconstruction", "Pressure"} <= set(rebuilt.columns)
    assert rebuilt["Temperature (change)"].abs().median() < frame["Temperature"][:400].std()
    # Drawn windows come back as levels: the changes added up from the training rows' median.
    assert main(["sample", str(valve_run), "--num", "4", "--out", str(tmp_path / "d.csv")]) == 0
    drawn, seen = pd.read_csv(tmp_path / "d.csv")["Temperature"], frame["Temperature"][:400]
    assert len(drawn) == 4 * 32 and seen.min() - np.ptp(seen) < drawn.min() <= drawn.max() < seen.max() + np.ptp(seen)


def test_wandering_is_judged_stretch_by_stretch():
    """SKAB's anomaly-free recording (2.6 hours): over the whole of it the vibrations and the flow
    rate step between states and look slow, but within stretches of 128 rows only the two
    temperatures wander. A lone channel, or one that climbs by a fixed step, keeps its level."""
    from vaekit.errors import VaekitError
    from vaekit.kinds.series.data import changes_of, fit_scaling

    frame = pd.read_csv(shared("skab/anomaly-free/anomaly-free.csv", "SKAB"), sep=";")
    names = [c for c in frame.columns if c != "datetime"]
    values = frame[names].to_numpy(dtype=float)
    assert changes_of([values], names, "auto", 128) == ["Temperature", "Thermocouple"]
    assert len(changes_of([values], names, "auto", len(values))) == 5  # one stretch: the states look like drift
    assert changes_of([values[:, [4]]], ["Temperature"]) == []
    assert changes_of([np.c_[np.arange(500.0), values[:500, 4]]], ["count", "Temperature"]) == ["Temperature"]
    assert changes_of([values], names, "none") == [] and changes_of([values], names, "Pressure") == ["Pressure"]
    gappy = values[:500, :2].copy()
    gappy[::2, 0] = np.nan  # never two rows in a row: no change to model
    with pytest.raises(VaekitError, match="no two neighbouring rows"):
        fit_scaling([gappy], names[:2], "gappy.csv", names[0])
    # detect's refits: a channel flat so far is scaled by 1 about its value, and the others are
    # judged as ever (the temperatures still by their changes).
    flat = values[:500].copy()
    flat[:, 0] = 0.25
    with pytest.raises(VaekitError, match="constant"):
        fit_scaling([flat], names, "flat.csv", "auto")
    schema = fit_scaling([flat], names, "flat.csv", "auto", allow_flat=True)
    assert schema["changes"] == ["Temperature", "Thermocouple"]
    assert (schema["centre"][0], schema["spread"][0]) == (0.25, 1.0) and min(schema["spread"][1:]) > 0
    with pytest.raises(VaekitError, match="no two neighbouring rows"):
        fit_scaling([gappy], names[:2], "gappy.csv", names[0], allow_flat=True)


def test_detect_ranks_a_value_past_the_stream_range_above_its_past(taxi, tmp_path):
    from vaekit.kinds.series.commands import overshoot

    share = overshoot(np.array([[0.0], [1.0], [0.5], [1.02], [1.2], [-0.5]]))
    assert np.allclose(share, [0, np.inf, 0, 0.02, 0.18 / 1.02, 0.5 / 1.2])  # row 1: the first move
    data = pd.read_csv(taxi).head(500)
    data.loc[450, "value"] = int(1.5 * data["value"].max())  # a spike 50% past anything before it
    data.to_csv(tmp_path / "spike.csv", index=False)
    assert main(["detect", "--data", str(tmp_path / "spike.csv"), "--kind", "series", "--probation", "200",
                 "--out", str(tmp_path / "s.csv")]) == 0
    score = scores(tmp_path / "s.csv")["anomaly_score"]
    assert score[450] > score[:450].max() and score[450] > 0.999 and score[450] < 1


def test_past_scores_rank_records_by_the_gap_above_the_median():
    from vaekit.kinds.series.commands import PastScores

    calm, wild = PastScores(np.r_[np.zeros(99), 1.0]), PastScores(np.r_[np.full(99, 0.9), 1.0])
    assert calm.add(0.0) == wild.add(0.9) == pytest.approx(0.5 * 99 / 100)  # ties count half
    # 0.5 past the same highest score: half its gap to the median in `calm`, five gaps in `wild`
    p_calm, p_wild = calm.add(1.5), wild.add(1.5)
    assert p_calm == pytest.approx(1 - 0.5 / 101 / 1.5) and p_wild == pytest.approx(1 - 0.5 / 101 / 6)
    assert p_calm < p_wild < 1 and calm.add(1.2) < p_calm  # 1.5 joined the past: 1.2 is no record


def test_missing_points_add_nothing_to_the_likelihood_and_read_as_the_centre():
    import torch

    from vaekit.kinds.series.model import GapEncoder, PointGaussian

    torch.manual_seed(0)
    out = torch.randn(2, 6, 8)  # two windows of 3 channels x 8 points: means, then log-scales
    px = PointGaussian()(out)
    x = torch.randn(2, 3, 8)
    gappy = x.clone()
    gappy[0, 1, 2] = gappy[1, 0, 7] = float("nan")
    point = px.base_dist.log_prob(x)
    expected = px.log_prob(x) - torch.stack([point[0, 1, 2], point[1, 0, 7]])
    assert torch.allclose(px.log_prob(gappy), expected) and px.log_prob(gappy).isfinite().all()
    enc = GapEncoder((3, 8), 4, [16], "relu")
    assert torch.equal(enc(gappy), enc(torch.nan_to_num(gappy, nan=0.0)))


def test_a_stream_with_gaps_trains_and_its_missing_rows_raise_no_alarm(taxi, tmp_path):
    data = pd.read_csv(taxi)
    gaps = np.zeros(len(data), bool)
    for start in (100, 300, 520, 900, 1050):  # 10-40 rows at a time, in and after the training rows
        gaps[start : start + 10 + start % 31] = True
    data.loc[gaps, "value"] = np.nan
    path = tmp_path / "gappy.csv"
    data.to_csv(path, index=False)
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), *FAST, "--train-rows", "800", "--season", "none", "--out", str(run)]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(records[-1]["val_neg_elbo"]) and records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"]
    assert main(["anomaly", str(run), "--data", str(path), "--out", str(tmp_path / "s.csv")]) == 0
    rows = scores(tmp_path / "s.csv")
    assert len(rows) == len(data) and rows["anomaly_score"].between(0, 1).all()
    # A missing newest point takes the decoder's mean: no row inside a gap is flagged.
    assert rows["flagged"][gaps].sum() == 0 and rows["flagged"][~gaps].mean() < 0.05


def test_a_seasonal_channel_is_compared_with_the_same_hours_a_season_earlier(taxi):
    from vaekit.kinds.series.data import deseasoned, read_stream, season_of

    stream = read_stream(taxi, None, [])
    part = lambda n: [(stream.values[:n], stream.stamps[:n])]  # noqa: E731
    # Half-hourly taxi counts repeat each day and, better, each week: the week once the rows span three.
    assert season_of(part(1200)) == [336] and season_of(part(800)) == [48] and season_of(part(100)) == [0]
    assert season_of(part(800), "week") == [336] and season_of(part(800), "7") == [7]
    assert season_of(part(1200), "none") == [0]
    assert season_of([(stream.values[:800], np.arange(800.0))]) == [0]  # numbered rows: no day or week
    cpu = read_stream(shared("nab/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv", "NAB"), None, [])
    assert season_of([(cpu.values[:1000], cpu.stamps[:1000])]) == [0]  # five-minute CPU: no daily pattern
    # A row is compared with the nearest of the same rows one to three seasons earlier: a spike is
    # far from all of them, and the day after it is not called odd because of it.
    spiked = stream.values.copy()
    spiked[700, 0] += 20_000
    clean, odd = deseasoned(stream.values, [48])[:, 0], deseasoned(spiked, [48])[:, 0]
    assert np.isnan(clean[:48]).all() and not np.isnan(clean[48:]).any()
    assert odd[700] > 15_000 and abs(odd[748]) < 5_000 and np.allclose(odd[:700], clean[:700], equal_nan=True)


def test_a_weekday_shaped_like_a_sunday_alarms_only_against_the_week_before(tmp_path):
    """NAB's taxi holidays look like Sundays: a Wednesday given the Sunday before's counts is odd
    only next to the Wednesdays before it (NAB 63.59 -> 69.99 with seasons, docs/series.md)."""
    data = pd.read_csv(shared("nab/realKnownCause/nyc_taxi.csv", "NAB")).head(1500)
    wednesday = slice(1392, 1440)  # 2014-07-30, after 1,200 training rows; 1248-1295: Sunday the 27th
    data.loc[1392:1439, "value"] = data["value"][1248:1296].to_numpy()
    data.to_csv(tmp_path / "holiday.csv", index=False)
    flagged = {}
    for season in ("auto", "none"):
        run = tmp_path / season
        assert main(["train", "--data", str(tmp_path / "holiday.csv"), *FAST, "--train-rows", "1200", "--season",
                     season, "--out", str(run)]) == 0
        assert json.loads((run / "schema.json").read_text())["season"] == [336 if season == "auto" else 0]
        assert main(["anomaly", str(run), "--data", str(tmp_path / "holiday.csv"), "--out", str(run / "s.csv")]) == 0
        flagged[season] = scores(run / "s.csv")["flagged"].to_numpy()
    assert flagged["auto"][wednesday].sum() >= 4 and flagged["none"][wednesday].sum() == 0, flagged
    assert flagged["auto"][1200:].sum() - flagged["auto"][wednesday].sum() <= 2  # the other 252 rows
    # The model's channel is the count's difference from a week earlier, and says so.
    run = tmp_path / "auto"
    assert main(["reconstruct", str(run), "--data", str(tmp_path / "holiday.csv"), "--out", str(tmp_path / "r.csv")]) == 0
    assert "value (vs. 336 rows earlier)" in pd.read_csv(tmp_path / "r.csv").columns
    assert main(["sample", str(run), "--num", "2", "--out", str(tmp_path / "d.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "d.csv").columns) == ["window", "step", "value (vs. 336 rows earlier)"]


def test_a_long_line_is_thinned_to_its_extremes():
    from vaekit.kinds.series.commands import PLOT_POINTS, thinned

    y = np.sin(np.arange(50_000) / 300.0)
    y[12_345], y[40_000:40_500] = 9.0, np.nan  # a spike one row wide, a gap
    x, thin = thinned(np.arange(len(y)), y)
    assert len(x) == len(thin) == 2 * PLOT_POINTS and np.nanmax(thin) == 9.0 and np.nanmin(thin) == np.nanmin(y)
    assert np.all(np.diff(x) >= 0)
    assert np.array_equal(thinned(np.arange(10), y[:10])[1], y[:10])  # a short line is drawn whole


def test_trailing_mean_is_causal():
    from vaekit.kinds.series.model import trailing_mean

    v = np.random.default_rng(0).normal(size=50)
    assert np.allclose(trailing_mean(v, 4), pd.Series(v).rolling(4, min_periods=1).mean())
    assert np.allclose(trailing_mean(v[:20], 4), trailing_mean(v, 4)[:20]) and trailing_mean(v, 1) is v


def test_scores_are_written_exactly_and_quoted_only_where_needed(tmp_path):
    from vaekit.kinds.series.commands import write_scores

    score = np.r_[0.0, 1 - 1e-12, np.random.default_rng(0).random(998)]
    result = {"anomaly_score": score, "flagged": (score > 0.99).astype(int)}
    write_scores(tmp_path / "a.csv", "time", [str(i) for i in range(1000)], result)
    text = (tmp_path / "a.csv").read_text()
    assert text.startswith("time,anomaly_score,flagged\n0,0") and '"' not in text
    assert np.array_equal(pd.read_csv(tmp_path / "a.csv")["anomaly_score"].to_numpy(), score)  # every digit kept
    tops = ["flow, m3/h;pressure"] + ["pressure"] * 999  # a channel name with a comma
    write_scores(tmp_path / "b.csv", "time", [str(i) for i in range(1000)], result | {"top_columns": tops})
    back = pd.read_csv(tmp_path / "b.csv")
    assert back["top_columns"].tolist() == tops and np.array_equal(back["anomaly_score"].to_numpy(), score)


def test_bad_streams_give_one_line(taxi_run, taxi, valve, tmp_path):
    data = pd.read_csv(taxi, dtype=str).head(100)
    cases = {
        "when.csv": data.assign(timestamp=["yesterday"] + data["timestamp"].tolist()[1:]),
        "text.csv": data.assign(value=["x"] + data["value"].tolist()[1:]),
        "flat.csv": data.assign(value="5"),
        "short.csv": data.head(10),
    }
    needles = {"when.csv": "not a time", "text.csv": "not numeric", "flat.csv": "constant",
               "short.csv": "shorter than one window"}
    for name, frame in cases.items():
        frame.to_csv(tmp_path / name, index=False)
        one_line_error(vaekit_cli("train", "--data", tmp_path / name, "--kind", "series", "--out", tmp_path / "r"),
                       name, needles[name])
        assert not (tmp_path / "r").exists()
    pd.DataFrame({"timestamp": data["timestamp"], "other": data["value"]}).to_csv(tmp_path / "cols.csv", index=False)
    one_line_error(vaekit_cli("anomaly", taxi_run, "--data", tmp_path / "cols.csv"), "cols.csv", "value")
    one_line_error(vaekit_cli("anomaly", taxi_run, "--data", valve), "0.csv", "time column")
    one_line_error(vaekit_cli("train", "--data", taxi, "--kind", "series", "--changes", "speed", "--out",
                              tmp_path / "r"), "--changes", "speed")
    one_line_error(vaekit_cli("train", "--data", taxi, "--kind", "series", "--season", "fortnight", "--out",
                              tmp_path / "r"), "--season", "fortnight")
    one_line_error(vaekit_cli("train", "--data", taxi, "--kind", "series", "--season", "5000", "--out",
                              tmp_path / "r"), "--season of 5000 rows", "'value'")
    # A channel named in --changes that the first fit never sees on two rows in a row: refused
    # by detect before any fit, as by train.
    rig = pd.read_csv(valve, sep=";").head(300)
    rig.loc[::2, "Pressure"] = np.nan
    rig.to_csv(tmp_path / "gaps.csv", sep=";", index=False)
    one_line_error(vaekit_cli("detect", "--data", tmp_path / "gaps.csv", "--kind", "series", "--changes", "Pressure",
                              "--out", tmp_path / "g.csv"), "gaps.csv", "no two neighbouring rows")
    assert not (tmp_path / "g.csv").exists()
    # A clock put back (daylight saving) or a repeated time: said once, the rows scored in the file's order.
    data.iloc[[0, 1, 1, 3, 2, *range(4, 100)]].to_csv(tmp_path / "dst.csv", index=False)
    done = vaekit_cli("anomaly", taxi_run, "--data", tmp_path / "dst.csv", "--out", tmp_path / "dst_scores.csv")
    assert done.returncode == 0 and "1 duplicate timestamps, 1 steps back in time" in done.stderr
    assert len(pd.read_csv(tmp_path / "dst_scores.csv")) == 101  # one row per input row
