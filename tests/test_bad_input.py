"""Bad input at the data layer, without a training run: every corruption of a valid
manifest stops with an error naming the file, the line and the column (or is skipped
with a count, as docs/bad_input.md says), NaN/Inf features stop with the utterance and where
its features are stored, and a checkpoint copy is fsynced before and after its rename.
(The same errors through fairseq-train are in test_reliability.py.)"""

import logging
import os
import re
import stat

import numpy as np
import pytest
from fairseq.data import ConcatDataset, Dictionary
from fairseq.data.audio.speech_to_text_joint_dataset import S2TJointDataConfig, SpeechToTextJointDatasetItem
from fairseq.data.audio.speech_to_text_dataset import SpeechToTextDatasetCreator

from fairseq_exporter import compat
from fairseq_exporter.data import s2t_layout
from fairseq_exporter.data.exporter_dataset import AudioError, ExporterDatasetCreator, ExporterItem, ManifestError

WORDS = "the cat sat on mat der die katze sass auf matte".split()
# id: (frames, English, German); line 2 of the manifest is u0, line 3 u1, ...
UTTERANCES = {"u0": (12, "the cat", "die katze"), "u1": (15, "the cat sat", "die katze sass"),
              "u2": (9, "on the mat", "auf der matte"), "u3": (11, "the mat", "die matte")}


def write_split(data, split, features, names=None):
    """A joint manifest {split}.tsv over a zip of the given features ({id: array})."""
    with s2t_layout.FeatureZipWriter(data / f"{split}.zip") as zf:
        for utt_id, array in features.items():
            zf.add(utt_id, array)
    entries = s2t_layout.zip_entries(data / f"{split}.zip")
    rows = [(i, entries[i].audio, entries[i].n_frames, en, de, "spk0")
            for i, (_, en, de) in (names or UTTERANCES).items() if i in features]
    s2t_layout.write_manifest(data / f"{split}.tsv", rows, s2t_layout.JOINT_COLUMNS)
    return data / f"{split}.tsv"


def features_of(utterances=UTTERANCES, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.standard_normal((n, 80)).astype(np.float32) for i, (n, _, _) in utterances.items()}


@pytest.fixture
def data(tmp_path):
    """A valid S2T data dir: dev.tsv over dev.zip, dictionaries and a joint config whose
    audio_root is the dir (so the manifest's audio field is 'dev.zip:OFFSET:LENGTH')."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("dict.en.txt", "dict.de.txt"):
        (data / name).write_text("".join(f"{w} 1\n" for w in WORDS))
    s2t_layout.write_data_config(data / "config.yaml", vocab_filename="dict.de.txt",
                                 src_vocab_filename="dict.en.txt", audio_root=str(data),
                                 features=s2t_layout.default_feature_settings(specaugment=None))
    write_split(data, "dev", features_of())
    return data


def load_samples(data, split="dev"):
    creator = ExporterDatasetCreator.with_limits(None, str(data))
    return creator._load_samples_from_tsv(str(data), split)


def load_dataset(data, splits="dev"):
    creator = ExporterDatasetCreator.with_limits(None, str(data))
    cfg = S2TJointDataConfig(data / "config.yaml")
    d = Dictionary.load(str(data / "dict.de.txt"))
    return creator.from_tsv(str(data), cfg, splits, tgt_dict=d, src_dict=Dictionary.load(str(data / "dict.en.txt")),
                            pre_tokenizer=None, bpe_tokenizer=None, src_pre_tokenizer=None,
                            src_bpe_tokenizer=None, is_train_split=False, epoch=1, seed=1)


# ---- manifests ----------------------------------------------------------------------
def _fields(line: bytes):
    return line.split(b"\t")


def _set(line: bytes, column: int, value: bytes) -> bytes:
    fields = _fields(line)
    fields[column] = value
    return b"\t".join(fields)


def _drop(line: bytes, column: int) -> bytes:
    fields = _fields(line)
    del fields[column]
    return b"\t".join(fields)


# name: (manifest line (1 = header), how the line is corrupted, what the error says after
# "manifest {path}: 1 problem(s) in 4 row(s):\n  "). Columns: 1 id, 2 audio, 3 n_frames,
# 4 src_text, 5 tgt_text, 6 speaker.
CORRUPTIONS = {
    # src_text lost its tab: read as it is, tgt_text would hold the speaker
    "missing src_text": (3, lambda l: _drop(l, 3),
                         "line 3 (utterance u1), column 6 (speaker): missing; the line has 5 tab-separated "
                         "field(s) where the header has 6; read as it is, tgt_text would be 'spk0'"),
    "only an id": (4, lambda l: _fields(l)[0],
                   "line 4 (utterance u2), column 2 (audio): missing; the line has 1 tab-separated field(s)"),
    "tab inside tgt_text": (2, lambda l: _set(l, 4, b"die\tkatze"),
                            "line 2 (utterance u0), column 7: 7 tab-separated fields where the header has 6 "
                            "(id audio n_frames src_text tgt_text speaker); 'spk0' has no column"),
    "n_frames not a number": (5, lambda l: _set(l, 2, b"eleven"),
                              "line 5 (utterance u3), column 3 (n_frames): 'eleven' is not a number of frames"),
    "n_frames negative": (3, lambda l: _set(l, 2, b"-15"),
                          "line 3 (utterance u1), column 3 (n_frames): '-15' is not a number of frames"),
    "n_frames fractional": (3, lambda l: _set(l, 2, b"15.0"),
                            "line 3 (utterance u1), column 3 (n_frames): '15.0' is not a number of frames"),
    "n_frames empty": (2, lambda l: _set(l, 2, b""),
                       "line 2 (utterance u0), column 3 (n_frames): '' is not a number of frames"),
    "duplicate id": (4, lambda l: _set(l, 0, b"u0"),
                     "line 4, column 1 (id): utterance id u0 is already the id of line 2"),
    "empty id": (3, lambda l: _set(l, 0, b""), "line 3, column 1 (id): empty"),
}


def _corrupt(tsv, line_no, corrupt):
    lines = tsv.read_bytes().split(b"\n")
    lines[line_no - 1] = corrupt(lines[line_no - 1])
    tsv.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupted_manifest_line_is_named_by_file_line_and_column(data, name):
    line_no, corrupt, expected = CORRUPTIONS[name]
    tsv = data / "dev.tsv"
    _corrupt(tsv, line_no, corrupt)
    with pytest.raises(ManifestError) as err:
        load_samples(data)
    message = str(err.value)
    assert message.startswith(f"manifest {tsv}: 1 problem(s) in 4 row(s):\n  {expected}"), message


def test_every_bad_line_is_counted_and_the_first_ten_listed(data):
    tsv = data / "dev.tsv"
    header, *rows = tsv.read_bytes().decode().splitlines()
    rows = [r.replace("\tspk0", "") for r in rows * 4]  # 16 short rows, ids repeated too
    tsv.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(ManifestError) as err:
        load_samples(data)
    message = str(err.value)
    assert message.startswith(f"manifest {tsv}: 16 problem(s) in 16 row(s):"), message
    assert "line 11 (utterance u1), column 6 (speaker): missing" in message
    assert "line 12 " not in message and "... and 6 more" in message
    assert "A lost or added tab moves every value after it into another column" in message


def test_manifest_that_is_not_utf8_names_line_column_and_byte(data):
    tsv = data / "dev.tsv"
    lines = tsv.read_bytes().split(b"\n")
    lines[3] = _set(lines[3], 4, "auf der straße".encode("latin-1"))  # line 4, u2
    tsv.write_bytes(b"\n".join(lines))
    with pytest.raises(ManifestError) as err:
        load_samples(data)
    byte_in_line = lines[3].index(b"\xdf") + 1
    byte_in_file = tsv.read_bytes().index(b"\xdf")
    assert str(err.value).startswith(
        f"manifest {tsv} line 4 (utterance u2), column 5 (tgt_text), byte {byte_in_line} of the line "
        f"(byte {byte_in_file} of the file): b'\\xdf' is not UTF-8."), str(err.value)


def test_valid_manifest_loads_as_fairseq_reads_it(data):
    """The strict reader accepts the valid manifest, with CRLF line ends or a blank line
    too, and gives the same rows as fairseq's own csv.DictReader."""
    tsv = data / "dev.tsv"
    fairseq_rows = SpeechToTextDatasetCreator._load_samples_from_tsv(str(data), "dev")
    assert load_samples(data) == fairseq_rows
    assert [r["tgt_text"] for r in fairseq_rows] == [de for _, _, de in UTTERANCES.values()]
    assert load_samples(data) == s2t_layout.read_manifest(tsv, s2t_layout.JOINT_COLUMNS)
    text = tsv.read_text()
    tsv.write_bytes(text.replace("\n", "\r\n").encode())
    assert load_samples(data) == fairseq_rows
    lines = text.splitlines()
    tsv.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    assert load_samples(data) == fairseq_rows


def test_layout_reader_names_the_line_with_a_lost_tab(data):
    """fairseq-exporter-join-manifests reads through s2t_layout.read_manifest: same check."""
    tsv = data / "dev.tsv"
    _corrupt(tsv, 3, lambda l: _drop(l, 3))
    with pytest.raises(ManifestError, match=re.escape(
            f"manifest {tsv}: 1 problem(s) in 4 row(s):\n  line 3 (utterance u1), column 6 (speaker): missing")):
        s2t_layout.read_manifest(tsv)


def test_empty_transcripts_and_zero_frames_are_skipped_with_a_count(data, caplog):
    """Like prep_mustc's "empty sentence" and the ASR's too-short utterances: left out,
    counted and named with their lines, not an error."""
    tsv = data / "dev.tsv"
    _corrupt(tsv, 2, lambda l: _set(l, 4, b" "))   # u0: blank translation
    _corrupt(tsv, 4, lambda l: _set(l, 3, b""))    # u2: empty transcript
    _corrupt(tsv, 5, lambda l: _set(l, 2, b"0"))   # u3: no frames
    with caplog.at_level(logging.WARNING):
        samples = load_samples(data)
    assert [s["id"] for s in samples] == ["u1"]
    assert (f"{tsv}: skipped 3 of 4 utterances: 2 with an empty src_text or tgt_text (e.g. u0 (line 2), "
            "u2 (line 4)); 1 shorter than 1 frame(s)") in caplog.text, caplog.text
    assert "(e.g. u3 (line 5))" in caplog.text


# ---- features -----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the NaN/Inf it is given
def test_nan_or_inf_features_stop_naming_the_utterance_and_its_zip_entry(data):
    features = features_of()
    features["u1"][4, 7] = np.nan
    features["u2"][[2, 5], 0] = np.inf
    tsv = write_split(data, "dev", features)
    audio = {r["id"]: r["audio"] for r in s2t_layout.read_manifest(tsv)}
    dataset = load_dataset(data)
    for index, utt_id, counts, first in ((1, "u1", "1 NaN and 0 Inf value(s), in 1 of 15 frames", 4),
                                         (2, "u2", "0 NaN and 2 Inf value(s), in 2 of 9 frames", 2)):
        with pytest.raises(AudioError) as err:
            dataset[index]
        assert str(err.value) == (
            f"manifest {tsv} line {index + 2}: utterance {utt_id}: {data / audio[utt_id]}: the stored features hold {counts} "
            f"(the first at index {first}). Recompute this utterance's features, or remove it from the manifest.")
        assert re.fullmatch(r"dev\.zip:\d+:\d+", audio[utt_id])
    batch = dataset.collater([dataset[0], dataset[3]])  # the others still load
    assert batch["net_input"]["src_tokens"].isfinite().all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the NaN/Inf it is given
def test_non_finite_features_are_named_in_the_right_split_of_several(data):
    """fairseq concatenates --train-subset splits; a batch's sample["id"] is local to its
    split, so the culprit is named where it is read, by its own split."""
    more = {"v0": (10, "the cat", "die katze"), "v1": (13, "the mat", "die matte")}
    features = features_of(more, seed=1)
    features["v1"][0, 0] = np.nan
    tsv = write_split(data, "dev2", features, names=more)
    dataset = load_dataset(data, "dev,dev2")
    assert isinstance(dataset, ConcatDataset)
    dataset[len(UTTERANCES)]
    with pytest.raises(AudioError, match=re.escape(f"manifest {tsv} line 3: utterance v1: ")):
        dataset[len(UTTERANCES) + 1]


def test_a_batch_of_several_splits_names_each_utterance_by_split_and_id(data):
    """sample["id"] is each split's own index; the --onebest-cache keys its entries by
    the batch's net_input["utterance"] (split, id), which must follow the batch's row order."""
    more = {"v0": (10, "the cat", "die katze"), "u1": (30, "the mat", "die matte")}  # u1 again, other split
    write_split(data, "dev2", features_of(more, seed=1), names=more)
    dataset = load_dataset(data, "dev,dev2")
    items = [dataset[i] for i in (1, 4, 5, 2)]  # dev u1 (15 frames), dev2 v0 (10), dev2 u1 (30), dev u2 (9)
    batch = dataset.collater(items)
    assert batch["net_input"]["utterance"] == [("dev2", "u1"), ("dev", "u1"), ("dev2", "v0"), ("dev", "u2")]
    assert batch["id"].tolist() == [1, 1, 0, 2]  # fairseq's own, unchanged
    assert batch["net_input"]["src_lengths"].tolist() == [30, 15, 10, 9]
    assert [x.index for x in items] == [1, 0, 1, 2]
    assert SpeechToTextJointDatasetItem._fields == ExporterItem._fields[:-1]  # fairseq's item, one field more


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the NaN/Inf it is given
def test_features_made_non_finite_by_the_transforms_say_so(data):
    """Stored features are finite; a global CMVN whose stddev is 0 makes them Inf."""
    np.savez(data / "cmvn.npz", mean=np.zeros(80, dtype=np.float32), std=np.zeros(80, dtype=np.float32))
    s2t_layout.write_data_config(data / "config.yaml", vocab_filename="dict.de.txt",
                                 src_vocab_filename="dict.en.txt", audio_root=str(data),
                                 features={"input_channels": 1, "input_feat_per_channel": 80,
                                           "transforms": {"*": ["global_cmvn"]},
                                           "global_cmvn": {"stats_npz_path": str(data / "cmvn.npz")}})
    dataset = load_dataset(data)
    with pytest.raises(AudioError, match=r"utterance u0: .*dev\.zip:\d+:\d+: the stored features are finite but "
                                         r"NaN/Inf after the data config's feature transforms \(GlobalCMVN;"):
        dataset[0]


# ---- checkpoint copies ------------------------------------------------------------------
def test_checkpoint_copy_fsyncs_the_file_before_the_rename_and_the_dir_after(tmp_path, monkeypatch):
    from fairseq.file_io import PathManager

    compat.make_checkpoint_copies_atomic()
    src, dst = tmp_path / "checkpoint_1_4.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(os.urandom(300_000))
    dst.write_bytes(b"the previous checkpoint")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync dir", st.st_ino) if stat.S_ISDIR(st.st_mode) else ("fsync file", st.st_ino, st.st_size))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.stat(a).st_ino, os.stat(a).st_size))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert PathManager.copy(str(src), str(dst), overwrite=True)
    copied = os.stat(dst)
    assert events == [("fsync file", copied.st_ino, 300_000), ("replace", copied.st_ino, 300_000),
                      ("fsync dir", os.stat(tmp_path).st_ino)]
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_1_4.pt", "checkpoint_last.pt"]


# ---- n_frames and <unk> ------------------------------------------------------------------
def test_n_frames_that_disagrees_with_the_stored_features_stops_naming_line_and_numbers(data):
    tsv = data / "dev.tsv"
    _corrupt(tsv, 3, lambda l: _set(l, 2, b"14"))  # u1 has 15 frames stored
    audio = {r["id"]: r["audio"] for r in s2t_layout.read_manifest(tsv)}
    dataset = load_dataset(data)
    dataset[0]
    with pytest.raises(AudioError) as err:
        dataset[1]
    assert str(err.value) == (
        f"manifest {tsv} line 3: utterance u1: {data / audio['u1']}: n_frames is 14 but the stored features "
        "have 15 frames. Batching and the length filters use n_frames: write 15 in the manifest, or "
        "recompute the features.")


def _our_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "fairseq_exporter.data.exporter_dataset" and r.levelno >= logging.WARNING]


def test_valid_manifest_warns_of_no_unk_and_every_utterance_loads(data, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(data)
    assert _our_warnings(caplog) == []
    assert [dataset[i].source.shape[0] for i in range(len(dataset))] == [n for n, _, _ in UTTERANCES.values()]
    assert all(dataset.tgt_dict.unk_index not in dataset[i].target for i in range(len(dataset)))


def _sentencepiece_data(data):
    """The fixture's data dir with sentencepiece models (trained on the fixture's text,
    so without 'ä' or 'ß') and their dictionaries in the config."""
    for lang, side in (("en", 1), ("de", 2)):
        text = data / f"train.{lang}"
        s2t_layout.write_text_lines(text, [u[side] for u in UTTERANCES.values()] * 20)
        model = s2t_layout.train_sentencepiece([text], data / f"spm_{lang}", vocab_size=30, num_threads=1)
        s2t_layout.write_dictionary_from_sentencepiece(model, data / f"dict.{lang}.txt")
    s2t_layout.write_data_config(
        data / "config.yaml", vocab_filename="dict.de.txt", src_vocab_filename="dict.en.txt", audio_root=str(data),
        bpe_tokenizer=s2t_layout.bpe_tokenizer_spec(str(data / "spm_de.model")),
        src_bpe_tokenizer=s2t_layout.bpe_tokenizer_spec(str(data / "spm_en.model")),
        features=s2t_layout.default_feature_settings(specaugment=None))


def load_sentencepiece_dataset(data, splits="dev"):
    from argparse import Namespace
    from fairseq.data import encoders

    cfg = S2TJointDataConfig(data / "config.yaml")
    creator = ExporterDatasetCreator.with_limits(None, str(data))
    return creator.from_tsv(str(data), cfg, splits, tgt_dict=Dictionary.load(str(data / "dict.de.txt")),
                            src_dict=Dictionary.load(str(data / "dict.en.txt")), pre_tokenizer=None,
                            bpe_tokenizer=encoders.build_bpe(Namespace(**cfg.bpe_tokenizer)),
                            src_pre_tokenizer=None,
                            src_bpe_tokenizer=encoders.build_bpe(Namespace(**cfg.src_bpe_tokenizer)),
                            is_train_split=False, epoch=1, seed=1)


def test_characters_the_sentencepiece_model_maps_to_unk_are_counted_per_split(data, caplog):
    _sentencepiece_data(data)
    with caplog.at_level(logging.WARNING):
        load_sentencepiece_dataset(data)
    assert _our_warnings(caplog) == []  # the fixture's text is all known
    tsv = data / "dev.tsv"
    _corrupt(tsv, 3, lambda l: _set(l, 3, "the cät sat".encode()))        # u1
    _corrupt(tsv, 5, lambda l: _set(l, 3, "the mat ß".encode()))          # u3
    _corrupt(tsv, 4, lambda l: _set(l, 4, "auf der straße".encode()))     # u2
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dataset = load_sentencepiece_dataset(data)
    assert (f"{tsv}: 2 of 4 transcripts (src_text) hold characters the source sentencepiece model "
            "spm_en.model with dict.en.txt maps to <unk> ('ä' 'ß'): u1 (line 3) 'ä', u3 (line 5) 'ß'; "
            "they reach the MT as <unk>") in caplog.text, caplog.text
    assert (f"{tsv}: 1 of 4 translations (tgt_text) hold characters the target sentencepiece model "
            "spm_de.model with dict.de.txt maps to <unk> ('ß'): u2 (line 4) 'ß'; "
            "they reach the MT as <unk>") in caplog.text, caplog.text
    # what the warning says is what the model gets
    src_unk = dataset.src_dict.unk_index
    assert [i for i in range(4) if src_unk in dataset[i].src_txt_tokens] == [1, 3]
    assert [i for i in range(4) if dataset.tgt_dict.unk_index in dataset[i].target] == [2]


def test_unk_warning_counts_all_and_names_the_first_three_in_each_split(data, caplog):
    """Without a bpe the dictionary's words are the vocabulary: an unknown word is <unk>."""
    more = {f"v{k}": (10, f"the dog {k}", "die katze") for k in range(5)}
    write_split(data, "dev2", features_of(more, seed=1), names=more)
    with caplog.at_level(logging.WARNING):
        load_dataset(data, "dev,dev2")
    assert "dev.tsv:" not in caplog.text
    assert (f"{data / 'dev2.tsv'}: 5 of 5 transcripts (src_text) hold characters the source dictionary "
            "dict.en.txt maps to <unk> ('dog' '0' '1' '2' '3' '4'): v0 (line 2) 'dog' '0', "
            "v1 (line 3) 'dog' '1', v2 (line 4) 'dog' '2', ...; they reach the MT as <unk>") in caplog.text, caplog.text
    assert "translations (tgt_text)" not in caplog.text
