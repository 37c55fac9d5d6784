"""The audio kind on a few real FSDD recordings: training improves the ELBO; sample, convert,
reconstruct and interpolate write .wav files named by the file-naming contract; bad input gets
one line and exit 2 (or a warning where the handling is lenient)."""

import json
import shutil
import wave

import numpy as np
import pytest

import vaekit
from vaekit.cli import main
from vaekit.kinds.audio.signal import read_wav

from conftest import one_line_error, shared, spoken_wavs


class Said:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.fixture
def cli(capsys):
    """`vaekit ARGS` in this process (a subprocess per call would spend seconds importing torch)."""

    def call(*argv):
        capsys.readouterr()
        code = main([str(a) for a in argv])
        said = capsys.readouterr()
        return Said(code, said.out, said.err)

    return call


SPEAKERS, DIGITS, TAKES = ("jackson", "theo"), ("3", "7"), 12


@pytest.fixture(scope="module")
def fsdd_few(tmp_path_factory):
    """48 real recordings (2 speakers x 2 digits x 12 takes; take 0 is the test split), and
    a third speaker the run never hears."""
    src = shared("fsdd/recordings", "FSDD")
    root = tmp_path_factory.mktemp("fsdd")
    for folder, speakers in (("train", SPEAKERS), ("unheard", ("nicolas",))):
        (root / folder).mkdir()
        for s in speakers:
            for d in DIGITS:
                for k in range(TAKES if folder == "train" else 2):
                    shutil.copy(src / f"{d}_{s}_{k}.wav", root / folder)
    return root


@pytest.fixture(scope="module")
def audio_run(fsdd_few):
    from conftest import vaekit_cli

    run = fsdd_few / "run"
    result = vaekit_cli("train", "--data", fsdd_few / "train", "--kind", "audio", "--out", run, "--epochs", "40",
                        "--hidden", "64", "--conv-channels", "32,32", "--latent-dim", "4", "--quiet")
    assert result.returncode == 0, result.stderr
    return run


def test_training_on_real_recordings_improves_the_elbo(audio_run):
    records = [json.loads(line) for line in (audio_run / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0]["val_neg_elbo"], records[-1]["val_neg_elbo"]
    assert np.isfinite(last) and last < first - 100, (first, last)
    schema = json.loads((audio_run / "schema.json").read_text())
    assert schema["conditions"] == {"digit": list(DIGITS), "speaker": list(SPEAKERS)}  # index is not a condition
    assert schema["frontend"]["sample_rate"] == 8000
    assert (audio_run / "samples.png").stat().st_size > 0


def test_sample_names_each_file_with_the_labels_asked_for(audio_run, tmp_path, cli):
    out = tmp_path / "gen"
    result = cli("sample", audio_run, "--num", "4", "--condition", "digit=7", "--condition", "speaker=theo",
                        "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.wav")) == [f"7_theo_{i}.wav" for i in range(4)]
    x, rate = read_wav(out / "7_theo_0.wav")
    assert rate == 8000 and 0.05 < len(x) / rate < 1.0 and 0 < np.abs(x).max() <= 1
    drawn = cli("sample", audio_run, "--num", "40", "--condition", "digit=3", "--out", tmp_path / "d3")
    assert drawn.returncode == 0
    speakers = {p.stem.split("_")[1] for p in (tmp_path / "d3").glob("*.wav")}
    assert speakers == set(SPEAKERS)  # a label not given is drawn from the training labels
    assert all(p.stem.startswith("3_") for p in (tmp_path / "d3").glob("*.wav"))


def test_convert_keeps_the_inputs_labels_and_index_and_takes_unheard_speakers(audio_run, fsdd_few, tmp_path, cli):
    out = tmp_path / "conv"
    result = cli("convert", audio_run, "--data", fsdd_few / "unheard", "--condition", "speaker=jackson",
                        "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(f"{d}_jackson_{k}.wav" for d in DIGITS for k in (0, 1))
    one = tmp_path / "one"
    assert cli("convert", audio_run, "--data", fsdd_few / "train" / "3_theo_5.wav", "--condition",
                      "speaker=jackson", "--out", one).returncode == 0
    assert [p.name for p in one.glob("*.wav")] == ["3_jackson_5.wav"]
    model = vaekit.open(audio_run)
    sounds = model.convert(fsdd_few / "unheard" / "7_nicolas_1.wav", "speaker=theo")
    assert sounds.names == ["7_theo_1"] and np.isfinite(sounds.waves[0]).all()


def test_reconstruct_interpolate_encode_evaluate(audio_run, fsdd_few, tmp_path, cli):
    assert cli("reconstruct", audio_run, "--num", "3", "--out", tmp_path / "rec").returncode == 0
    assert len(list((tmp_path / "rec").glob("*_reconstruction.wav"))) == 3
    assert cli("interpolate", audio_run, "--pairs", "2", "--steps", "4", "--out", tmp_path / "int").returncode == 0
    assert len(list((tmp_path / "int").glob("morph_*.wav"))) == 2
    enc = cli("encode", audio_run, "--data", fsdd_few / "unheard", "--out", tmp_path / "e.csv")
    assert enc.returncode == 0
    rows = (tmp_path / "e.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[1].split(",")[0] in {f"{d}_nicolas_{k}" for d in DIGITS for k in (0, 1)}
    ev = cli("evaluate", audio_run, "--json", "--iw-samples", "5")
    figures = json.loads(ev.stdout)
    assert 0 < figures["log_mel_distance_db"] < 40 and figures["num_examples"] == 4  # take 0: the lowest tenth of 12


def write_wav(path, x, rate=8000, width=2, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        ints = (np.clip(x, -1, 1) * (2 ** (8 * width - 1) - 1)).astype({2: "<i2", 4: "<i4"}[width])
        w.writeframes(ints.tobytes())


def test_other_rates_widths_and_stereo_are_read_and_resampled(tmp_path):
    t = np.arange(4410) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_wav(tmp_path / "a.wav", np.repeat(tone, 2), rate=44100, width=4, channels=2)
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 44100 and len(x) == 4410 and abs(np.abs(x).max() - 0.5) < 1e-3
    from vaekit.kinds.audio.signal import resample

    assert len(resample(x, 44100, 8000)) == 800


def test_bad_recordings_get_one_line(tmp_path, cli):
    good = spoken_wavs(tmp_path / "good")
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    (bad / "0_ann_0.wav").write_bytes(b"this is not a wav file")
    one_line_error(cli("train", "--data", bad, "--kind", "audio", "--out", tmp_path / "r1"), "0_ann_0.wav",
                   "not a readable PCM wav")
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    raw = (cut / "1_bob_2.wav").read_bytes()
    (cut / "1_bob_2.wav").write_bytes(raw[: len(raw) // 2])
    one_line_error(cli("train", "--data", cut, "--kind", "audio", "--out", tmp_path / "r2"), "1_bob_2.wav",
                   "truncated")
    (tmp_path / "empty").mkdir()
    one_line_error(cli("train", "--data", tmp_path / "empty", "--kind", "audio", "--out", tmp_path / "r3"),
                   "no .wav files")
    one_line_error(cli("train", "--data", good, "--kind", "audio", "--labels-from-name", "{word}-{take}",
                              "--out", tmp_path / "r4"), "matches no file name")
    one_line_error(cli("train", "--data", good, "--kind", "audio", "--conditions", "accent",
                              "--out", tmp_path / "r5"), "accent")
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    for name in ("0_ann_0", "1_ann_0"):
        write_wav(quiet / f"{name}.wav", np.zeros(2000))
    one_line_error(cli("train", "--data", quiet, "--kind", "audio", "--out", tmp_path / "r6"), "silent")
    for r in ("r1", "r2", "r3", "r4", "r5", "r6"):
        assert not (tmp_path / r).exists()


def test_silent_and_overlong_clips_are_handled_with_a_warning(tmp_path, cli):
    data = spoken_wavs(tmp_path / "wavs", takes=8)
    write_wav(data / "0_ann_99.wav", np.zeros(2400))
    long = np.concatenate([read_wav(data / "1_bob_3.wav")[0]] * 12)
    write_wav(data / "1_bob_98.wav", long)
    run = tmp_path / "run"
    result = cli("train", "--data", data, "--out", run, "--epochs", "2", "--hidden", "16",  # --kind auto
                        "--latent-dim", "2", "--conv-channels", "8,8", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "1 silent recording(s) left out, e.g." in result.stderr and "0_ann_99.wav" in result.stderr
    assert "were cut to it, the longest" in result.stderr and "1_bob_98.wav" in result.stderr
    one_line_error(cli("sample", run, "--condition", "speaker=zoe"), "speaker=zoe", "unknown value")
    one_line_error(cli("sample", run, "--condition", "accent=x"), "accent")
    one_line_error(cli("sample", run, "--condition", "digit"), "LABEL=VALUE")
    one_line_error(cli("convert", run, "--data", data), "--condition")


def test_a_manifest_gives_labels_and_none_trains_unconditionally(tmp_path, cli):
    data = spoken_wavs(tmp_path / "wavs", takes=5)
    rows = ["path,word"] + [f"wavs/{p.name},{'up' if p.name[0] == '0' else 'down'}" for p in sorted(data.glob("*.wav"))]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    small = ["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--conv-channels", "8,8", "--quiet"]
    assert cli("train", "--data", tmp_path / "list.csv", "--kind", "audio", "--out", tmp_path / "m",
                      *small).returncode == 0
    assert json.loads((tmp_path / "m" / "schema.json").read_text())["conditions"] == {"word": ["down", "up"]}
    assert cli("sample", tmp_path / "m", "--num", "2", "--condition", "word=up", "--out",
                      tmp_path / "s").returncode == 0
    assert sorted(p.name for p in (tmp_path / "s").glob("*.wav")) == ["up_0.wav", "up_1.wav"]
    assert cli("train", "--data", data, "--kind", "audio", "--conditions", "none", "--out", tmp_path / "u",
                      *small).returncode == 0
    assert vaekit.open(tmp_path / "u").vae.cfg.num_classes == 0
    one_line_error(cli("sample", tmp_path / "u", "--condition", "digit=0"), "digit")
    assert cli("sample", tmp_path / "u", "--num", "2", "--out", tmp_path / "us").returncode == 0
    assert len(list((tmp_path / "us").glob("*.wav"))) == 2
