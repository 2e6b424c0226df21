"""Generated corruptions of a valid manifest and feature zip. Each case (reproducible
from its number) corrupts one utterance in one way, loads the split as the exporter
task does and reads every utterance. It must end in an error naming the manifest and
the line, or the utterance and where its features are stored, or in a skip counted in
the log with the utterance named; every utterance it does not name must read exactly
as in the valid split."""

import logging
import random
import re

import numpy as np
import pytest
from fairseq.data import Dictionary
from fairseq.data.audio.speech_to_text_joint_dataset import S2TJointDataConfig

from fairseq_exporter.data import s2t_layout
from fairseq_exporter.data.exporter_dataset import AudioError, ExporterDatasetCreator, ManifestError

WORDS = "the cat sat on mat a dog der die katze sass auf matte ein hund".split()
N_UTTERANCES = 8
N_CASES = 60
# Columns: 0 id, 1 audio, 2 n_frames, 3 src_text, 4 tgt_text, 5 speaker. Line 2 is u0.


def _utterances(rng):
    en, de = WORDS[:7], WORDS[7:]
    return {f"u{k}": (rng.randint(5, 30), " ".join(rng.choices(en, k=rng.randint(1, 5))),
                      " ".join(rng.choices(de, k=rng.randint(1, 5)))) for k in range(N_UTTERANCES)}


def _write(data, utterances, features):
    with s2t_layout.FeatureZipWriter(data / "dev.zip") as zf:
        for utt_id in utterances:
            zf.add(utt_id, features[utt_id])
    entries = s2t_layout.zip_entries(data / "dev.zip")
    rows = [(i, entries[i].audio, entries[i].n_frames, en, de, "spk0") for i, (_, en, de) in utterances.items()]
    s2t_layout.write_manifest(data / "dev.tsv", rows, s2t_layout.JOINT_COLUMNS)


def _write_config(data):
    s2t_layout.write_data_config(data / "config.yaml", vocab_filename="dict.de.txt",
                                 src_vocab_filename="dict.en.txt", audio_root=str(data),
                                 features=s2t_layout.default_feature_settings(specaugment=None))


def _load_and_read(data):
    """{id: (features, target tokens)} of every utterance, as the task would see them."""
    creator = ExporterDatasetCreator.with_limits(None, str(data))
    dataset = creator.from_tsv(str(data), S2TJointDataConfig(data / "config.yaml"), "dev",
                               tgt_dict=Dictionary.load(str(data / "dict.de.txt")),
                               src_dict=Dictionary.load(str(data / "dict.en.txt")), pre_tokenizer=None,
                               bpe_tokenizer=None, src_pre_tokenizer=None, src_bpe_tokenizer=None,
                               is_train_split=False, epoch=1, seed=1)
    read, errors = {}, {}
    for i in range(len(dataset)):
        try:
            item = dataset[i]
            read[dataset.ids[i]] = (item.source.numpy(), item.target.tolist())
        except AudioError as err:  # a read-time error names one utterance; the others still read
            errors[dataset.ids[i]] = str(err)
    return read, errors


def _set_field(tsv, line_no, column, value: bytes):
    lines = tsv.read_bytes().split(b"\n")
    fields = lines[line_no - 1].split(b"\t")
    fields[column] = value
    lines[line_no - 1] = b"\t".join(fields)
    tsv.write_bytes(b"\n".join(lines))


def _edit_line(tsv, line_no, edit):
    lines = tsv.read_bytes().split(b"\n")
    lines[line_no - 1] = edit(lines[line_no - 1])
    tsv.write_bytes(b"\n".join(lines))


def _audio_field(tsv, line_no):
    return tsv.read_bytes().split(b"\n")[line_no - 1].split(b"\t")[1].decode()


# Each corruption: (rng, data, utterances, features, k) -> how the run must end:
# "manifest" (a ManifestError or load-time AudioError naming the manifest and line k+2),
# "read" (an AudioError when utterance k is read, naming it and its zip entry) or
# "skip" (utterance k left out with a count naming it and its line).
def field_count(rng, data, utt, feats, k):
    def edit(line):
        fields = line.split(b"\t")
        if rng.random() < 0.5:
            del fields[rng.randrange(len(fields))]
        else:
            fields.insert(rng.randrange(len(fields) + 1), b"extra")
        return b"\t".join(fields)
    _edit_line(data / "dev.tsv", k + 2, edit)
    return "manifest"


def newline_in_text(rng, data, utt, feats, k):
    _set_field(data / "dev.tsv", k + 2, rng.choice([3, 4]), b"the cat\nsat")
    return "manifest"


def not_utf8(rng, data, utt, feats, k):
    column = rng.choice([0, 3, 4, 5])
    bad = rng.choice([b"\xff", b"\xe4", "straße".encode("latin-1"), b"\xc3"])
    _set_field(data / "dev.tsv", k + 2, column, b"x" + bad)
    return "manifest"


def bad_number(rng, data, utt, feats, k):
    _set_field(data / "dev.tsv", k + 2, 2, rng.choice([b"-3", b"1.5", b"abc", b"", b"1e3", b" 12", b"0x10"]))
    return "manifest"


def wrong_n_frames(rng, data, utt, feats, k):
    n = utt[f"u{k}"][0]
    _set_field(data / "dev.tsv", k + 2, 2, str(rng.choice([n - 1, n + 1, 2 * n])).encode())
    return "read"


def duplicate_id(rng, data, utt, feats, k):
    other = rng.choice([j for j in range(N_UTTERANCES) if j != k])
    _set_field(data / "dev.tsv", k + 2, 0, f"u{other}".encode())
    return "manifest"


def empty_text(rng, data, utt, feats, k):
    _set_field(data / "dev.tsv", k + 2, rng.choice([3, 4]), rng.choice([b"", b" ", b"  "]))
    return "skip"


def non_finite(rng, data, utt, feats, k):
    bad = {u: f.copy() for u, f in feats.items()}
    target = bad[f"u{k}"]
    target[rng.randrange(len(target)), rng.randrange(80)] = rng.choice([np.nan, np.inf, -np.inf])
    _write(data, utt, bad)
    return "read"


def truncated_zip(rng, data, utt, feats, k):
    """The zip cut inside utterance k's entry: its entry and every later one run past the end."""
    offset, length = map(int, _audio_field(data / "dev.tsv", k + 2).split(":")[1:])
    path = data / "dev.zip"
    path.write_bytes(path.read_bytes()[:offset + rng.randrange(1, length)])
    return "manifest"


def truncated_entry(rng, data, utt, feats, k):
    name, offset, length = _audio_field(data / "dev.tsv", k + 2).split(":")
    _set_field(data / "dev.tsv", k + 2, 1, f"{name}:{offset}:{rng.randrange(1, int(length))}".encode())
    return "read"


def entry_of_nothing(rng, data, utt, feats, k):
    """An offset that is not the start of an .npy (a corrupted manifest or a rebuilt zip)."""
    name, offset, length = _audio_field(data / "dev.tsv", k + 2).split(":")
    _set_field(data / "dev.tsv", k + 2, 1, f"{name}:{int(offset) + rng.randrange(1, 64)}:{length}".encode())
    return "manifest"


CORRUPTIONS = [field_count, newline_in_text, not_utf8, bad_number, wrong_n_frames, duplicate_id,
               empty_text, non_finite, truncated_zip, truncated_entry, entry_of_nothing]


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """The valid split's data dir and what each utterance reads as."""
    rng = random.Random(0)
    data = tmp_path_factory.mktemp("valid")
    for name in ("dict.en.txt", "dict.de.txt"):
        (data / name).write_text("".join(f"{w} 1\n" for w in WORDS))
    utterances = _utterances(rng)
    np_rng = np.random.default_rng(0)
    features = {u: np_rng.standard_normal((n, 80)).astype(np.float32) for u, (n, _, _) in utterances.items()}
    _write(data, utterances, features)
    _write_config(data)
    read, errors = _load_and_read(data)
    assert not errors and len(read) == N_UTTERANCES
    return data, utterances, features, read


def _copy(valid_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in valid_dir.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    _write_config(data)  # its audio_root is the copy
    return data


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the NaN/Inf it is given
@pytest.mark.parametrize("case", range(N_CASES))
def test_a_generated_corruption_is_named_or_skipped_and_the_rest_reads_as_before(valid, tmp_path, case, caplog):
    valid_dir, utterances, features, valid_read = valid
    rng = random.Random(1000 + case)
    # every kind at least five times over the cases, the rest drawn at random
    corruption = CORRUPTIONS[case % len(CORRUPTIONS)] if case < 5 * len(CORRUPTIONS) else rng.choice(CORRUPTIONS)
    k = rng.randrange(N_UTTERANCES)
    data = _copy(valid_dir, tmp_path)
    expected = corruption(rng, data, utterances, features, k)
    tsv, line, utt_id = data / "dev.tsv", k + 2, f"u{k}"
    about = f"case {case}: {corruption.__name__} of {utt_id} (line {line})"

    if expected == "manifest":
        with pytest.raises((ManifestError, AudioError)) as err:
            _load_and_read(data)
        message = str(err.value)
        assert message.startswith(f"manifest {tsv}"), f"{about}: {message}"
        named = re.search(rf"\bline {line}\b", message) or re.search(rf"\butterance {utt_id}\b", message)
        assert named, f"{about}: {message}"
        return

    with caplog.at_level(logging.WARNING):
        read, errors = _load_and_read(data)
    if expected == "read":
        assert list(errors) == [utt_id], f"{about}: {errors}"
        message = errors[utt_id]
        assert f"utterance {utt_id}: {data}/dev.zip:" in message, f"{about}: {message}"
        assert message.startswith(f"manifest {tsv} line {line}: "), f"{about}: {message}"
    else:  # skip
        assert not errors and utt_id not in read, about
        assert re.search(rf"{re.escape(str(tsv))}: skipped 1 of {N_UTTERANCES} utterances: .*\b{utt_id} "
                         rf"\(line {line}\)", caplog.text), f"{about}: {caplog.text}"
    # the valid part is untouched
    assert sorted(read) == sorted(u for u in valid_read if u != utt_id), about
    for u, (source, target) in read.items():
        assert np.array_equal(source, valid_read[u][0]) and target == valid_read[u][1], f"{about}: {u} differs"
