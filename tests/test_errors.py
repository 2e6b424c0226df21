"""Bad input gets an error that names the file or option at fault."""

import shutil
import subprocess
import sys

import pytest
import torch
from exporter_setup import build, train_args

from fairseq_exporter.models.dictionaries import DictionaryMismatchError
from fairseq_exporter.models.pretrained import CheckpointRoleError


def test_asr_checkpoint_given_as_mt_checkpoint_says_which_is_which(cascade):
    swapped = dict(cascade, asr=cascade["mt"], mt=cascade["asr"])
    with pytest.raises(CheckpointRoleError, match=r"--asr-checkpoint .* is a 'translation' checkpoint"
                                                  r".*--mt-checkpoint"):
        build(swapped)
    with pytest.raises(CheckpointRoleError, match=r"--mt-checkpoint .*'speech_to_text' checkpoint"):
        build(dict(cascade, mt=cascade["asr"]))


def test_swapped_checkpoints_through_the_cli(cascade):
    args = train_args(dict(cascade, asr=cascade["mt"], mt=cascade["asr"]), "--max-update", "1")
    proc = subprocess.run([sys.executable, "-m", "fairseq_cli.train", *args], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "--asr-checkpoint" in proc.stderr and "Did you mean to pass it as --mt-checkpoint" in proc.stderr


def test_asr_and_mt_dictionary_mismatch_names_both_files_and_first_difference(cascade, tmp_path):
    lines = (cascade["s2t"] / "dict.en.txt").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    other = tmp_path / "dict.asr.txt"
    other.write_text("\n".join(lines) + "\n")
    first, second = lines[0].split()[0], lines[1].split()[0]
    with pytest.raises(DictionaryMismatchError) as err:
        build(cascade, "--asr-dict", str(other))
    msg = str(err.value)
    assert str(other) in msg and "dict.en.txt" in msg and str(cascade["asr"]) in msg
    assert f"index 4: {first!r} vs {second!r}" in msg  # 4 = first symbol after the specials


def test_data_config_dictionary_must_be_the_mt_one(cascade, tmp_path):
    data = tmp_path / "s2t"
    shutil.copytree(cascade["s2t"], data)
    lines = (data / "dict.de.txt").read_text().splitlines()
    (data / "dict.de.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DictionaryMismatchError, match=r"target dictionary of the data config \(dict.de.txt\)"):
        build(dict(cascade, s2t=data))


def test_manifest_without_src_text_names_file_and_column(cascade, tmp_path):
    data = tmp_path / "s2t"
    shutil.copytree(cascade["s2t"], data)
    tsv = data / "test.tsv"
    tsv.write_text(tsv.read_text().replace("src_text", "source_text", 1))
    _, task, _, _ = build(dict(cascade, s2t=data))
    with pytest.raises(ValueError, match=r"test.tsv lacks column\(s\) src_text"):
        task.load_dataset("test")


@pytest.mark.skipif(not hasattr(torch.serialization, "add_safe_globals"),
                    reason="torch < 2.4 (the Python 3.10 path) unpickles checkpoints fully")
def test_crafted_checkpoint_is_refused_and_runs_nothing(cascade, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "cfg": Payload()}, evil)
    with pytest.raises(ValueError, match=r"--mt-checkpoint .*evil.pt: not a loadable fairseq checkpoint"):
        build(dict(cascade, mt=evil))
    assert not marker.exists()
