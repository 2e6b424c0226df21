"""recipes/mustc/run.sh and fairseq_exporter.cli.prep_mustc on a tiny fake MuST-C release:
real file names and yaml format, espeak speech, 2-3 talks per split."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist)
from fairseq_exporter.cli import join_manifests, prep_mustc
from fairseq_exporter.data import s2t_layout
from fairseq_exporter.features import fbank80, resample
from tiny_cascade import sentences

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "mustc" / "run.sh"
# split: (talks, segments per talk). Train talks run past 10 s, where fairseq's sort of the
# offset strings ("12.5" < "9.1") differs from time order.
FAKE_SPLITS = {"train": (3, 4), "dev": (2, 3), "tst-COMMON": (2, 3), "tst-HE": (2, 2)}
GAP_S = 3.0
# train talk 0, segment 2 (in time order) has an empty German line: fairseq's ST manifest drops it.
EMPTY_GERMAN = ("train", 0, 2)
TINY_MODEL = ("--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
              "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 "
              "--decoder-attention-heads 2")
TINY = [
    "--asr-arch", "s2t_transformer", "--asr-flags", TINY_MODEL + " --conv-channels 32",
    "--mt-arch", "transformer", "--mt-flags", TINY_MODEL + " --share-decoder-input-output-embed",
    "--max-tokens", "20000", "--update-freq", "1", "--mt-update-freq", "1", "--mt-max-tokens", "2000",
    "--asr-max-update", "6", "--asr-warmup", "3", "--mt-max-update", "6", "--mt-warmup", "3",
    "--mt-adapt-max-update", "2", "--mt-adapt-warmup", "1", "--stage1-max-update", "3",
    "--stage2-max-update", "3", "--exporter-warmup", "2", "--valid-interval", "3",
    "--exporter-hidden-dim", "32", "--beam", "2", "--gen-max-tokens", "20000", "--vocab-size", "60",
    "--num-workers", "0", "--workers", "2", "--log-interval", "1",
]


# ---- the fake release -----------------------------------------------------------------
def write_fake_mustc(root: Path, lang: str = "de"):
    """MuST-C's en-{lang}/data/{split}/{wav,txt} tree; returns {split: [(talk, offset, en, de)]}
    in time order."""
    from fairseq_exporter.toy.espeak import EspeakSynthesizer

    tts = EspeakSynthesizer()
    rng = np.random.default_rng(0)
    pairs = iter(sentences(200, 7))
    layout, talk_number = {}, 1000
    for split, (n_talks, n_segments) in FAKE_SPLITS.items():
        wav_dir, txt_dir = root / f"en-{lang}" / "data" / split / "wav", root / f"en-{lang}" / "data" / split / "txt"
        wav_dir.mkdir(parents=True)
        txt_dir.mkdir(parents=True)
        yaml_lines, en_lines, de_lines, layout[split] = [], [], [], []
        for t in range(n_talks):
            talk_number += 7
            talk = f"ted_{talk_number}"
            audio = [np.zeros(int(0.3 * 16000), np.float32)]
            position = 0.3
            for s in range(n_segments):
                en, de = next(pairs)
                speech = resample(tts.synth(en + ".", "en-us", 190).astype(np.float32) / 32768,
                                  tts.sample_rate, 16000)
                duration = len(speech) / 16000
                if (split, t, s) == EMPTY_GERMAN:
                    de = ""
                yaml_lines.append(f"- {{duration: {duration:.6f}, offset: {position:.6f}, rW: 0, uW: 0, "
                                  f"speaker_id: spk.{talk_number}, wav: {talk}.wav}}")
                en_lines.append(en)
                de_lines.append(de)
                layout[split].append((talk, position, en, de))
                audio += [speech, np.zeros(int(GAP_S * 16000), np.float32)]
                position += duration + GAP_S
            wav = np.concatenate(audio)
            wav += 1e-3 * rng.standard_normal(len(wav)).astype(np.float32)
            sf.write(wav_dir / f"{talk}.wav", wav, 16000, subtype="PCM_16")
        (txt_dir / f"{split}.yaml").write_text("\n".join(yaml_lines) + "\n")
        (txt_dir / f"{split}.en").write_text("\n".join(en_lines) + "\n")
        (txt_dir / f"{split}.{lang}").write_text("\n".join(de_lines) + "\n")
    return layout


@pytest.fixture(scope="module")
def fake_mustc(tmp_path_factory):
    root = tmp_path_factory.mktemp("mustc")
    return root, write_fake_mustc(root)


# fairseq's own examples/speech_to_text/prep_mustc_data.py, run as a fairseq user runs it
# (--task asr, then --task st), with two substitutions: audio is read with soundfile and fbank
# computed by kaldi-native-fbank, where fairseq would call torchaudio (never installed here).
# Its vocabulary step is skipped: fairseq trains sentencepiece on a temporary file it has not
# flushed, which is empty for a corpus this small.
FAIRSEQ_PREP = """
import sys
from argparse import Namespace
import numpy as np, soundfile as sf
sys.path.insert(0, sys.argv[1])
from examples.speech_to_text import prep_mustc_data as prep
from fairseq_exporter.features import fbank80

def get_waveform(path, frames=-1, start=0, **unused):
    wav, sample_rate = sf.read(path, dtype="float32", always_2d=True, frames=frames, start=start)
    return wav.T, sample_rate

def extract_fbank_features(waveform, sample_rate, output_path=None, **unused):
    features = fbank80(waveform.numpy().mean(axis=0), sample_rate)
    np.save(output_path.as_posix(), features)
    return features

prep.get_waveform, prep.extract_fbank_features = get_waveform, extract_fbank_features
prep.gen_vocab = lambda *args, **kwargs: None
for task in ("asr", "st"):
    prep.process(Namespace(data_root=sys.argv[2], task=task, vocab_type="unigram", vocab_size=100,
                           joint=False, cmvn_type="utterance", gcmvn_max_num=1000, use_audio_input=False))
"""


@pytest.fixture(scope="module")
def fairseq_prepared(fake_mustc, tmp_path_factory):
    """The en-de dir where fairseq's prep_mustc_data.py wrote {split}_{asr,st}.tsv and fbank80.zip."""
    import shutil

    import fairseq

    root = tmp_path_factory.mktemp("fairseq-prep")
    shutil.copytree(fake_mustc[0] / "en-de", root / "en-de")
    # fairseq's examples import one another as the top-level package "examples".
    (root / "path").mkdir()
    (root / "path" / "examples").symlink_to(Path(fairseq.__file__).parent / "examples")
    proc = subprocess.run([sys.executable, "-c", FAIRSEQ_PREP, str(root / "path"), str(root)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "en-de"


@pytest.fixture(scope="module")
def prepared(fake_mustc, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prep_mustc.prepare_features(fake_mustc[0], "de", out, prep_mustc.SPLITS, workers=2, max_overrun=0.0)
    return out


def _rows(path, *columns):
    return [tuple(row[c] for c in columns) for row in s2t_layout.read_manifest(path)]


def _features(audio: str) -> np.ndarray:
    from fairseq.data.audio.audio_utils import get_features_or_waveform

    return get_features_or_waveform(audio)


def test_prep_cuts_names_and_filters_segments_as_fairseqs_prep_mustc_data(fake_mustc, prepared, fairseq_prepared):
    for split in prep_mustc.SPLITS:
        # the ASR manifest, row for row: ids, frame counts, transcripts, speakers
        ours = _rows(prepared / f"{split}_asr.tsv", "id", "n_frames", "tgt_text", "speaker")
        theirs = _rows(fairseq_prepared / f"{split}_asr.tsv", "id", "n_frames", "tgt_text", "speaker")
        assert sorted(ours) == sorted(theirs), split
        # the exporter's manifest: ids both of fairseq's manifests keep, with both texts
        st = {r[0]: r[1] for r in _rows(fairseq_prepared / f"{split}_st.tsv", "id", "tgt_text")}
        expected = sorted((i, n, en, st[i]) for i, n, en, _ in theirs if i in st)
        assert sorted(_rows(prepared / f"{split}.tsv", "id", "n_frames", "src_text", "tgt_text")) == expected
    # fairseq orders a talk's segments by the offset *string*: in a talk longer than 10 s its
    # _1 is the last segment, not the second
    talk, _, en, _ = fake_mustc[1]["train"][3]
    assert dict(_rows(prepared / "train_asr.tsv", "id", "tgt_text"))[f"{talk}_1"] == en
    # the empty German line: in the ASR manifest, not in the exporter's
    empty = f"{talk}_3"
    assert fake_mustc[1]["train"][2][3] == "" and empty in dict(_rows(prepared / "train_asr.tsv", "id", "id"))
    assert empty not in dict(_rows(prepared / "train.tsv", "id", "id"))
    # the features themselves, read back through fairseq's own zip reader
    theirs = {i: a for i, a in _rows(fairseq_prepared / "tst-HE_asr.tsv", "id", "audio")}
    for utt_id, audio, n_frames in _rows(prepared / "tst-HE_asr.tsv", "id", "audio", "n_frames"):
        mine = _features((prepared / audio).as_posix())
        assert mine.shape == (int(n_frames), 80)
        np.testing.assert_allclose(mine, _features(theirs[utt_id]), atol=1e-4)


def test_features_are_fbank80_of_the_yaml_segment(fake_mustc, prepared):
    talk, offset, en, _ = fake_mustc[1]["dev"][1]
    (row,) = [r for r in s2t_layout.read_manifest(prepared / "dev.tsv") if r["src_text"] == en]
    wav, rate = sf.read(fake_mustc[0] / "en-de" / "data" / "dev" / "wav" / f"{talk}.wav", dtype="float32")
    entry = next(line for line in (fake_mustc[0] / "en-de/data/dev/txt/dev.yaml").read_text().splitlines()
                 if f"offset: {offset:.6f}" in line and talk in line)
    duration = float(re.search(r"duration: ([0-9.]+)", entry).group(1))
    start = int(offset * rate)
    expected = fbank80(wav[start:start + int(duration * rate)], rate)
    np.testing.assert_allclose(_features((prepared / row["audio"]).as_posix()), expected, atol=1e-5)


def test_join_of_fairseqs_manifests_equals_the_prepared_ones(prepared, fairseq_prepared, tmp_path, capsys):
    report = join_manifests.join_manifests(fairseq_prepared, tmp_path)
    printed = capsys.readouterr().out
    for split in prep_mustc.SPLITS:
        columns = ("id", "n_frames", "src_text", "tgt_text", "speaker")
        assert sorted(_rows(tmp_path / f"{split}.tsv", *columns)) == sorted(_rows(prepared / f"{split}.tsv", *columns))
    (only_asr,) = report["train"]["only_asr"]  # the segment with the empty German line
    assert report["train"]["only_st"] == [] and f"1 only in train_asr.tsv: {only_asr}" in printed
    assert _rows(tmp_path / "train.unmatched.tsv", "id", "only_in") == [(only_asr, str(fairseq_prepared / "train_asr.tsv"))]
    # audio paths are absolute, and read back the same features
    row = s2t_layout.read_manifest(tmp_path / "dev.tsv")[0]
    ours = {r["id"]: r["audio"] for r in s2t_layout.read_manifest(prepared / "dev.tsv")}
    assert Path(s2t_layout.audio_file_of(row["audio"])).is_absolute()
    np.testing.assert_allclose(_features(row["audio"]), _features((prepared / ours[row["id"]]).as_posix()), atol=1e-4)


def test_mustc_root_is_the_folder_holding_en_de_or_en_de_itself(fake_mustc, tmp_path):
    root = fake_mustc[0]
    assert prep_mustc.release_dir(root, "de") == prep_mustc.release_dir(root / "en-de", "de") == root / "en-de"
    with pytest.raises(prep_mustc.MustcError, match=r"--mustc-root .*en-de/data nor .* exists"):
        prep_mustc.release_dir(tmp_path, "de")


# ---- damaged releases --------------------------------------------------------------------
def _dev_only_copy(fake_mustc, tmp_path):
    import shutil

    root = tmp_path / "mustc"
    shutil.copytree(fake_mustc[0] / "en-de" / "data" / "dev", root / "en-de" / "data" / "dev")
    return root, fake_mustc[1]["dev"]


def _prep_error(root, out, capsys, workers="1"):
    with pytest.raises(SystemExit) as exit_info:
        prep_mustc.main(["features", "--mustc-root", str(root), "--out", str(out), "--splits", "dev",
                         "--workers", workers])
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def test_a_truncated_wav_is_an_error_naming_its_talk_and_segment(fake_mustc, tmp_path, capsys):
    root, segments = _dev_only_copy(fake_mustc, tmp_path)
    talk, offset, _, _ = segments[-1]  # the last segment of the second talk
    wav = root / "en-de" / "data" / "dev" / "wav" / f"{talk}.wav"
    keep_seconds = offset + 0.2
    with open(wav, "r+b") as f:
        f.truncate(44 + int(keep_seconds * 16000) * 2)  # the header still announces the whole talk
    err = _prep_error(root, tmp_path / "out", capsys)
    # fairseq's id of that segment: its rank among the talk's offset strings
    offsets = sorted(f"{o:.6f}" for t, o, _, _ in segments if t == talk)
    segment_id = f"{talk}_{offsets.index(f'{offset:.6f}')}"
    assert f"talk {talk}" in err and "truncated" in err and f"segment {segment_id} " in err, err
    assert not (tmp_path / "out" / "fbank80.zip").exists()  # no zip that looks complete


def test_a_segment_past_the_end_of_its_wav_is_an_error_naming_its_talk_and_segment(fake_mustc, tmp_path, capsys):
    root, segments = _dev_only_copy(fake_mustc, tmp_path)
    yaml_path = root / "en-de" / "data" / "dev" / "txt" / "dev.yaml"
    lines = yaml_path.read_text().splitlines()
    lines[1] = re.sub(r"duration: [0-9.]+", "duration: 99.000000", lines[1])
    yaml_path.write_text("\n".join(lines) + "\n")
    talk = segments[1][0]
    err = _prep_error(root, tmp_path / "out", capsys)
    assert f"talk {talk}" in err and f"segment {talk}_" in err and "entry 2" in err and "past the end" in err, err
    # the same through the command line, with the talks spread over worker processes
    proc = subprocess.run([sys.executable, "-m", "fairseq_exporter.cli.prep_mustc", "features", "--mustc-root",
                           str(root), "--out", str(tmp_path / "out2"), "--splits", "dev", "--workers", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and f"talk {talk}" in proc.stderr and "past the end" in proc.stderr, proc.stderr[-2000:]
    # tolerated when asked to, cut at the end of the file
    prep_mustc.main(["features", "--mustc-root", str(root), "--out", str(tmp_path / "out3"), "--splits", "dev",
                     "--workers", "1", "--max-overrun-seconds", "100"])
    assert len(s2t_layout.read_manifest(tmp_path / "out3" / "dev.tsv")) == len(segments)


# ---- the recipe ---------------------------------------------------------------------------
def _recipe(*args, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(RECIPE), *args], capture_output=True, text=True, env=env, timeout=timeout)
    return proc


def _write_general_text(root: Path):
    """General-domain parallel text for the MT the recipe trains (raw, one sentence a line)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("general.train", 300, 11), ("general.valid", 30, 12)):
        pairs = sentences(n, seed)
        (root / f"{name}.en").write_text("".join(en + "\n" for en, _ in pairs))
        (root / f"{name}.de").write_text("".join(de + "\n" for _, de in pairs))
    return root


# Untrained models write long garbage; bounding the 1-best and the translation keeps CPU runs short.
SHORT_OUTPUTS = ["--exporter-flags", "--onebest-max-len 12",
                 "--generate-flags", "--onebest-max-len 12 --max-len-b 20",
                 "--extra-train-flags", "--required-batch-size-multiple 1"]


@pytest.fixture(scope="module")
def recipe_run(fake_mustc, tmp_path_factory):
    work = tmp_path_factory.mktemp("recipe")
    text = _write_general_text(work / "general")
    out = work / "exp"
    proc = _recipe(*_first_run_args(fake_mustc, out, text))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout, text


def _first_run_args(fake_mustc, out, text):
    # One test set here (each costs 8 CLI starts); the second run evaluates tst-HE.
    return ["--mustc-root", str(fake_mustc[0]), "--out", str(out), "--mt-text", str(text / "general.train"),
            "--mt-valid-text", str(text / "general.valid"), "--test-sets", "tst-COMMON", *TINY, *SHORT_OUTPUTS]


def _generate_lines(path: Path, prefix: str):
    from test_cli import _lines

    return _lines(path, prefix)


def test_recipe_runs_every_stage_and_writes_the_results_table(recipe_run):
    out, stdout, _ = recipe_run
    for stage in range(9):
        assert f"Stage {stage}:" in stdout
    table = (out / "results.md").read_text()
    for test in ("tst-COMMON",):
        n = len(s2t_layout.read_manifest(out / "data" / f"{test}.tsv"))
        assert n == len(fake_mustc_segments(test))
        section = table.split(f"## {test}")[1].split("##")[0]
        labels = re.findall(r"^\| ([^|]+?) \| (\d+) \|", section, re.MULTILINE)
        assert [label for label, _ in labels] == [
            "1-best cascade", "stage 1: exporter only (ASR, MT frozen)", "stage 2: ASR + exporter, MT frozen",
            "adapted MT: 1-best cascade", "stage 3: ASR + exporter, adapted MT frozen"], section
        assert all(int(count) == n for _, count in labels)
        for system in ("onebest", "stage1", "stage2", "adapted-onebest", "stage3"):
            generated = out / "gen" / test / system / f"generate-{test}.txt"
            for prefix in ("S-", "ASR-", "T-", "D-"):
                assert len(_generate_lines(generated, prefix)) == n, (generated, prefix)
        # one ASR, two couplings: the exporter and the 1-best cascade read the same 1-best
        assert sorted(_generate_lines(out / "gen" / test / "stage1" / f"generate-{test}.txt", "ASR-")) == \
            sorted(_generate_lines(out / "gen" / test / "onebest" / f"generate-{test}.txt", "ASR-"))
        score = json.loads((out / "gen" / test / "stage2" / "score.json").read_text())
        assert score["n"] == n and "p_bleu" in score and score["baseline"]["path"].endswith(f"onebest/generate-{test}.txt")


def test_recipe_couples_asr_and_mt_through_the_mt_source_vocabulary(recipe_run):
    import yaml

    out, _, text = recipe_run
    data = out / "data"
    st = yaml.safe_load((data / "config_st.yaml").read_text())
    asr = yaml.safe_load((data / "config_asr.yaml").read_text())
    assert st["src_vocab_filename"] == asr["vocab_filename"] == "dict.en.txt" and st["vocab_filename"] == "dict.de.txt"
    assert asr["bpe_tokenizer"] == st["src_bpe_tokenizer"] == {"bpe": "sentencepiece",
                                                               "sentencepiece_model": str(data / "spm_en.model")}
    # the MT was trained on the text named with --mt-text, in the same vocabulary
    assert (out / "text" / "raw" / "mt.train.en").read_text() == (text / "general.train.en").read_text()
    for lang in ("en", "de"):
        assert (out / "mt-bin" / f"dict.{lang}.txt").read_text() == (data / f"dict.{lang}.txt").read_text()
    # fairseq's MuST-C ASR flags
    asr_command = next(c for c in (out / "commands.sh").read_text().splitlines() if "--task speech_to_text " in c)
    for flag in ("--criterion label_smoothed_cross_entropy", "--report-accuracy", "--clip-norm 10.0",
                 "--lr-scheduler inverse_sqrt", "--config-yaml config_asr.yaml", "--train-subset train_asr"):
        assert flag in asr_command


def _state(path):
    return torch.load(path, map_location="cpu")


def test_recipe_stages_train_what_the_paper_says(recipe_run):
    out, _, _ = recipe_run
    stage1, stage2 = _state(out / "stage1" / "checkpoint_best.pt"), _state(out / "stage2" / "checkpoint_best.pt")
    assert stage1["cfg"]["model"]["freeze_asr"] and stage1["cfg"]["model"]["freeze_mt"]
    assert stage1["cfg"]["criterion"]["ast_weight"] == 0
    assert not stage2["cfg"]["model"]["freeze_asr"] and stage2["cfg"]["model"]["freeze_mt"]
    assert stage2["cfg"]["criterion"]["asr_weight"] == 0.3
    # stage 3 couples the MT adapted on the MuST-C text (which the adaptation changed)
    mt, adapted = _state(out / "mt" / "checkpoint_best.pt")["model"], _state(out / "mt-adapted" / "checkpoint_best.pt")["model"]
    stage3 = _state(out / "stage3" / "checkpoint_best.pt")["model"]
    key = "encoder.layers.0.fc1.weight"
    assert not torch.equal(mt[key], adapted[key])
    assert torch.equal(stage3[key.replace("encoder.", "encoder.mt_encoder.", 1)], adapted[key])
    task_text = [r["src_text"] for r in s2t_layout.read_manifest(out / "data" / "train.tsv")]
    assert (out / "text" / "raw" / "task.train.en").read_text().splitlines() == task_text


def test_recipe_rerun_skips_finished_stages(recipe_run, fake_mustc):
    out, _, text = recipe_run
    before = (out / "commands.sh").read_text()
    proc = _recipe(*_first_run_args(fake_mustc, out, text))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "commands.sh").read_text() == before  # no command ran again
    assert "Stage 0: the manifests of" in proc.stdout and "skipped" in proc.stdout
    assert proc.stdout.count("done before, skipped") == 7  # mt, asr, stage1, stage2, mt-adapted, stage3-exporter, stage3


def test_recipe_reuses_fairseq_manifests_and_your_own_checkpoints(recipe_run, fairseq_prepared, tmp_path):
    import yaml

    first, _, _ = recipe_run
    out = tmp_path / "exp"
    proc = _recipe("--fairseq-manifests", str(fairseq_prepared), "--out", str(out),
                   "--mt-checkpoint", str(first / "mt" / "checkpoint_best.pt"), "--mt-data", str(first / "mt-bin"),
                   "--mt-src-bpe", str(first / "data" / "spm_en.model"), "--mt-tgt-bpe", str(first / "data" / "spm_de.model"),
                   "--asr-checkpoint", str(first / "asr" / "checkpoint_best.pt"),
                   "--stop-stage", "5", "--test-sets", "tst-HE", *TINY, *SHORT_OUTPUTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = out / "data"
    assert "only in train_asr.tsv" in proc.stdout and (data / "train.unmatched.tsv").exists()
    assert not (data / "fbank80.zip").exists()  # features reused, not recomputed
    st = yaml.safe_load((data / "config_st.yaml").read_text())
    assert st["src_vocab_filename"] == str(first / "mt-bin" / "dict.en.txt")
    assert st["bpe_tokenizer"]["sentencepiece_model"] == str(first / "data" / "spm_de.model")
    fairseq_config = yaml.safe_load((fairseq_prepared / "config_asr.yaml").read_text())
    assert st["specaugment"] == fairseq_config["specaugment"] and st["transforms"] == fairseq_config["transforms"]
    assert not (out / "mt").exists() and not (out / "asr").exists()  # nothing retrained
    n = len(s2t_layout.read_manifest(data / "tst-HE.tsv"))
    generated = out / "gen" / "tst-HE" / "stage1" / "generate-tst-HE.txt"
    assert len(_generate_lines(generated, "D-")) == n == len(fake_mustc_segments("tst-HE"))
    # the table of what ran so far
    table = _recipe("--stage", "8", "--out", str(out), "--test-sets", "tst-HE")
    assert table.returncode == 0, table.stderr
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) \|", (out / "results.md").read_text(), re.MULTILINE)
    assert rows == [("1-best cascade", str(n)), ("stage 1: exporter only (ASR, MT frozen)", str(n))]


def fake_mustc_segments(split):
    talks, per_talk = FAKE_SPLITS[split]
    return range(talks * per_talk)


def test_recipe_refuses_unknown_options_and_documents_its_settings():
    proc = _recipe("--max-tokenz", "1")
    assert proc.returncode != 0 and "unknown option --max-tokenz" in proc.stderr
    helped = _recipe("--help")
    assert helped.returncode == 0
    for setting in ("mustc_root=", "mt_checkpoint=", "max_tokens=40000", "update_freq=8", "asr_arch=s2t_transformer_s"):
        assert setting in helped.stdout
