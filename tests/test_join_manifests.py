"""fairseq-exporter-join-manifests: fairseq's {split}_asr.tsv + {split}_st.tsv -> the exporter's
{split}.tsv, by id, features reused as they are."""

import subprocess
import sys

import numpy as np
import pytest

from fairseq_exporter.cli.join_manifests import JoinError, join_manifests, main
from fairseq_exporter.data import s2t_layout
from fairseq_exporter.data.exporter_dataset import ExporterDatasetCreator

# id: (English, German); "" is a sentence fairseq's prep drops from that task's manifest.
UTTERANCES = {"ted_1_0": ("hello world", "hallo welt"), "ted_1_1": ("good morning", "guten morgen"),
              "ted_1_2": ("thank you", ""), "ted_2_0": ("", "applaus"), "ted_2_1": ("see you", "bis bald")}


def fairseq_prep_output(root, relative_audio=True):
    """What prep_mustc_data.py --task asr and --task st leave in MUSTC_ROOT/en-de: one
    fbank80.zip and two manifests with the same ids and audio (older fairseq versions
    wrote audio paths relative to MUSTC_ROOT, newer ones absolute)."""
    en_de = root / "en-de"
    with s2t_layout.FeatureZipWriter(en_de / "fbank80.zip") as zf:
        for k, utt_id in enumerate(UTTERANCES):
            zf.add(utt_id, np.full((10 + k, 80), k, dtype=np.float32))
    entries = s2t_layout.zip_entries(en_de / "fbank80.zip",
                                     name="en-de/fbank80.zip" if relative_audio else str(en_de / "fbank80.zip"))
    for task, side in (("asr", 0), ("st", 1)):
        rows = [(i, entries[i].audio, entries[i].n_frames, texts[side], "spk.1")
                for i, texts in UTTERANCES.items() if texts[side]]
        s2t_layout.write_manifest(en_de / f"dev_{task}.tsv", rows, s2t_layout.SINGLE_TARGET_COLUMNS)
    return en_de


def test_join_keeps_ids_in_both_and_lists_the_others(tmp_path, capsys):
    en_de = fairseq_prep_output(tmp_path)
    report = join_manifests(en_de, tmp_path / "out")
    rows = s2t_layout.read_manifest(tmp_path / "out" / "dev.tsv", s2t_layout.JOINT_COLUMNS)
    assert [(r["id"], r["src_text"], r["tgt_text"]) for r in rows] == [
        ("ted_1_0", "hello world", "hallo welt"), ("ted_1_1", "good morning", "guten morgen"),
        ("ted_2_1", "see you", "bis bald")]
    assert report["dev"] == {"joined": 3, "only_asr": ["ted_1_2"], "only_st": ["ted_2_0"]}
    printed = capsys.readouterr().out
    assert "1 only in dev_asr.tsv: ted_1_2" in printed and "1 only in dev_st.tsv: ted_2_0" in printed
    listed = s2t_layout.read_manifest(tmp_path / "out" / "dev.unmatched.tsv")
    assert [(r["id"], r["only_in"]) for r in listed] == [("ted_1_2", str(en_de / "dev_asr.tsv")),
                                                         ("ted_2_0", str(en_de / "dev_st.tsv"))]
    # the ASR manifest comes along (every ASR row) for training an ASR in the new dir
    asr = s2t_layout.read_manifest(tmp_path / "out" / "dev_asr.tsv")
    assert [r["id"] for r in asr] == ["ted_1_0", "ted_1_1", "ted_1_2", "ted_2_1"]


def test_joined_audio_is_absolute_and_read_by_the_exporter_dataset(tmp_path):
    from fairseq.data.audio.audio_utils import get_features_or_waveform

    fairseq_prep_output(tmp_path, relative_audio=True)  # "en-de/fbank80.zip:..." relative to MUSTC_ROOT
    join_manifests(tmp_path / "en-de", tmp_path / "elsewhere" / "data")
    samples = ExporterDatasetCreator._load_samples_from_tsv(str(tmp_path / "elsewhere" / "data"), "dev")
    k = list(UTTERANCES).index("ted_1_1")
    (sample,) = [s for s in samples if s["id"] == "ted_1_1"]
    assert sample["audio"].startswith(str(tmp_path / "en-de" / "fbank80.zip") + ":")
    features = get_features_or_waveform(sample["audio"])
    assert features.shape == (10 + k, 80) and (features == k).all()
    assert int(sample["n_frames"]) == 10 + k


def test_rows_whose_audio_disagree_are_an_error(tmp_path):
    en_de = fairseq_prep_output(tmp_path)
    st = s2t_layout.read_manifest(en_de / "dev_st.tsv")
    st[0]["n_frames"] = str(int(st[0]["n_frames"]) + 1)
    s2t_layout.write_manifest(en_de / "dev_st.tsv", st, s2t_layout.SINGLE_TARGET_COLUMNS)
    with pytest.raises(JoinError, match=r"id ted_1_0: audio .* frames in .*dev_asr.tsv, but .* frames in .*dev_st.tsv"):
        join_manifests(en_de, tmp_path / "out")


def test_duplicate_ids_missing_features_and_unpaired_splits_are_errors(tmp_path):
    en_de = fairseq_prep_output(tmp_path)
    asr = s2t_layout.read_manifest(en_de / "dev_asr.tsv")
    s2t_layout.write_manifest(en_de / "dev_asr.tsv", asr + asr[:1], s2t_layout.SINGLE_TARGET_COLUMNS)
    with pytest.raises(JoinError, match="dev_asr.tsv: id ted_1_0 appears twice"):
        join_manifests(en_de, tmp_path / "out")
    s2t_layout.write_manifest(en_de / "dev_asr.tsv", asr, s2t_layout.SINGLE_TARGET_COLUMNS)
    with pytest.raises(JoinError, match="split train: .*train_asr.tsv does not exist"):
        join_manifests(en_de, tmp_path / "out", splits=["train"])
    (en_de / "fbank80.zip").rename(en_de / "moved.zip")
    with pytest.raises(JoinError, match="the audio of ted_1_0, en-de/fbank80.zip, is not at .* pass --audio-root"):
        join_manifests(en_de, tmp_path / "out")


def test_command_line(tmp_path, capsys):
    en_de = fairseq_prep_output(tmp_path, relative_audio=False)
    proc = subprocess.run([sys.executable, "-m", "fairseq_exporter.cli.join_manifests", "--from", str(en_de),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| dev: 3 utterances joined" in proc.stdout and "ted_1_2" in proc.stdout
    assert (tmp_path / "out" / "dev.tsv").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "--from" in err and "nowhere: no such directory" in err
