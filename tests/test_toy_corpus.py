"""The toy corpus: the grammar's two domains, espeak speech, and the fairseq S2T layout on disk."""

import json
import re
import subprocess
import sys
import time
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, encoders
from fairseq.data.audio.audio_utils import get_features_or_waveform
from fairseq.data.audio.speech_to_text_joint_dataset import (
    S2TJointDataConfig,
    SpeechToTextJointDatasetCreator,
)

from fairseq_exporter.toy import espeak, grammar, make_corpus
from fairseq_exporter.toy.espeak import EspeakError, EspeakSynthesizer

SIZES = make_corpus.SCALES["quick"]
ST_COLUMNS = ["id", "audio", "n_frames", "src_text", "tgt_text", "speaker"]
ASR_COLUMNS = ["id", "audio", "n_frames", "tgt_text", "speaker"]


def read_tsv(path):
    header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
    return header, [dict(zip(header, row)) for row in rows]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    make_corpus.main(["--out", str(out), "--seed", "1", "--scale", "quick", "--workers", "2"])
    return out


# The grammar.

def _word_in(word, en):
    return re.search(rf"\b{word.en}\b|\b{word.en_pl}\b", en) is not None


def _german_forms(noun):
    return {noun.de, noun.de_pl, noun.de_dat_pl}


def _has_form(forms, de):
    return any(re.search(rf"\b{form}\b", de) for form in forms)


def test_ambiguous_words_translate_differently_across_domains():
    # 4-8-word sentences leave little room for a cue phrase: ~0.06% of general sentences carry a
    # given word's cued task sense, so it takes 20000 to see a handful per word
    general = grammar.generate("general", 20000, seed=3)
    task = grammar.generate("task", 2000, seed=3)
    for word in grammar.AMBIGUOUS:
        general_forms, task_forms = (_german_forms(word.sense(d)) for d in grammar.DOMAINS)
        assert general_forms.isdisjoint(task_forms), word.en
        uncued = [(en, de) for en, de in general if _word_in(word, en) and word.cue[0] not in en]
        cued = [(en, de) for en, de in general if _word_in(word, en) and word.cue[0] in en]
        in_task = [(en, de) for en, de in task if _word_in(word, en)]
        assert len(uncued) > 10 and len(cued) > 2 and len(in_task) > 10, word.en
        # An MT trained on general text sees the task sense only next to its cue ...
        assert all(_has_form(general_forms, de) for _, de in uncued), word.en
        assert all(_has_form(task_forms, de) for _, de in cued), word.en
        # ... while the task domain always means the task sense, mostly without the cue.
        assert all(_has_form(task_forms, de) for _, de in in_task), word.en
        assert sum(word.cue[0] not in en for en, _ in in_task) > len(in_task) / 2, word.en


def test_general_text_never_puts_an_uncued_ambiguous_word_beside_its_cue_noun():
    for en, _ in grammar.generate("general", 3000, seed=4):
        words = set(en.split())
        for word in grammar.AMBIGUOUS:
            if _word_in(word, en) and word.cue[0] not in en:
                assert word.cue_noun not in words, en


def test_generate_is_deterministic_unique_sized_and_honours_exclude():
    first = grammar.generate("task", 300, seed=7)
    assert first == grammar.generate("task", 300, seed=7)
    assert first != grammar.generate("task", 300, seed=8)
    assert len(first) == 300 and len({en for en, _ in first}) == 300
    for en, de in first:
        assert grammar.MIN_WORDS <= len(en.split()) <= grammar.MAX_WORDS
        assert en == en.lower() and re.fullmatch(r"[a-z ]+", en), en
        assert de[0].isupper() and de.endswith("."), de
    excluded = {en for en, _ in first[:100]}
    assert excluded.isdisjoint(en for en, _ in grammar.generate("task", 300, 7, exclude=excluded))


def _np(noun_en, determiner="the", plural=False, adjective=None, sense="general"):
    noun = next((n for n in grammar.NOUNS if n.en == noun_en), None)
    if noun is None:
        noun = next(a for a in grammar.AMBIGUOUS if a.en == noun_en).sense(sense)
    det = next(d for d in grammar.DETERMINERS if determiner in (d[0], d[1]))
    adj = next((a for a in grammar.ADJECTIVES if a.en == adjective), None)
    return grammar.NounPhrase(noun, plural, det, adj)


def _verb(en):
    return next(v for v in grammar.TRANSITIVE + grammar.INTRANSITIVE if v.en == en)


def test_german_verb_second_and_verb_final_word_order():
    clause = grammar.Clause(_np("man"), _verb("see"), obj=_np("bank", "a", adjective="old"),
                            tense="perfect")
    assert clause.en() == "the man has seen an old bank".split()
    assert clause.de("main") == "der Mann hat eine alte Bank gesehen".split()
    assert clause.de("sub") == "der Mann eine alte Bank gesehen hat".split()
    assert clause.de("inverted") == "hat der Mann eine alte Bank gesehen".split()
    fronted = grammar.Clause(_np("woman"), _verb("swim"), tense="perfect",
                             time=("today", "heute"), time_fronted=True)
    assert fronted.en() == "today the woman has swum".split()
    assert fronted.de("main") == "heute ist die Frau geschwommen".split()
    modal = grammar.Clause(_np("dog", plural=True), _verb("find"), obj=_np("key", "my"),
                           tense="can")
    assert modal.de("sub") == "die Hunde meinen Schlüssel finden können".split()


def test_german_case_agreement_and_contractions():
    assert _np("man", "the", True, "old").de("dat") == "den alten Männern".split()
    assert _np("child", "a", False, "small").de("nom") == "ein kleines Kind".split()
    assert _np("dog", "this", False, "dark").de("acc") == "diesen dunklen Hund".split()
    assert _np("cat", "two", True, "expensive").de("nom") == "zwei teure Katzen".split()
    assert _np("bank", sense="task").de("acc") == ["das", "Ufer"]
    _, de = grammar.prepositional_phrase(("in", "in", "dat"), _np("garden"))
    assert de == ["im", "Garten"]


# Speech.

def test_espeak_speaks_english_at_22050_hz():
    tts = EspeakSynthesizer()
    wav = tts.synth("the fisherman sees the bank of the river", "en-gb-scotland+f3", 180, 60)
    assert tts.sample_rate == 22050 and wav.dtype == np.int16
    assert 1.0 < len(wav) / tts.sample_rate < 6.0 and np.abs(wav).max() > 1000
    fast = tts.synth("the fisherman sees the bank of the river", "en-gb-scotland+f3", 350, 60)
    assert len(fast) < 0.75 * len(wav)
    with pytest.raises(EspeakError, match="no-such-voice"):
        tts.synth("hello", "no-such-voice")


_SPEAK_IN_FRESH_PROCESS = """
import hashlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("espeak", sys.argv[2])  # without fairseq's import
espeak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(espeak)
wav = espeak.EspeakSynthesizer().synth("the bank of the river", "en-us+f2", 170, 50, 50, int(sys.argv[1]))
print(hashlib.sha256(wav.tobytes()).hexdigest())
"""


def test_espeak_breath_noise_follows_the_noise_seed_not_the_clock():
    # +f2 adds breath noise from a generator espeak seeds with time(): unseeded, two fresh
    # processes gave different samples and so a different corpus for the same --seed.
    def speak(noise_seed):
        return subprocess.run([sys.executable, "-c", _SPEAK_IN_FRESH_PROCESS, str(noise_seed),
                               espeak.__file__],
                              check=True, capture_output=True, text=True).stdout.split()[-1]
    first = speak(7)
    time.sleep(1.1)  # espeak_Initialize seeds with time(): a different second
    assert speak(7) == first
    assert speak(8) != first


# The corpus on disk.

def test_manifests_have_fairseq_columns_and_shared_ids(corpus):
    st = corpus / "st"
    for split in make_corpus.SPLITS:
        header, rows = read_tsv(st / f"{split}.tsv")
        asr_header, asr_rows = read_tsv(st / f"{split}_asr.tsv")
        assert header == ST_COLUMNS and asr_header == ASR_COLUMNS
        assert len(rows) == SIZES[split] and all(len(r) == len(ST_COLUMNS) for r in rows)
        assert [r["id"] for r in rows] == [r["id"] for r in asr_rows]
        assert [r["src_text"] for r in rows] == [r["tgt_text"] for r in asr_rows]
        for row in rows:
            assert re.fullmatch(r"fbank80\.zip:\d+:\d+", row["audio"])
            assert row["src_text"] == row["src_text"].lower() and row["tgt_text"].endswith(".")
    train_en = {r["src_text"] for r in read_tsv(st / "train.tsv")[1]}
    for split in ("dev", "test"):
        assert train_en.isdisjoint(r["src_text"] for r in read_tsv(st / f"{split}.tsv")[1])


def test_every_zip_entry_loads_with_fairseq_as_n_frames_by_80(corpus):
    st = corpus / "st"
    seen = set()
    for split in make_corpus.SPLITS:
        for row in read_tsv(st / f"{split}.tsv")[1]:
            feats = get_features_or_waveform(f"{st}/{row['audio']}")
            assert feats.shape == (int(row["n_frames"]), 80) and feats.dtype == np.float32
            assert np.isfinite(feats).all() and feats.std() > 0.5
            seen.add(row["id"])
    with zipfile.ZipFile(st / "fbank80.zip") as zf:
        assert {Path(i.filename).stem for i in zf.infolist()} == seen
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_dictionaries_hold_every_piece_at_its_sentencepiece_id(corpus):
    st, text = corpus / "st", corpus / "text"
    for lang in ("en", "de"):
        model = spm.SentencePieceProcessor(model_file=str(st / f"spm_{lang}.model"))
        dictionary = Dictionary.load(str(st / f"dict.{lang}.txt"))
        assert len(dictionary) == model.get_piece_size()
        for i in range(model.get_piece_size()):
            assert dictionary.index(model.id_to_piece(i)) == i or i < 4
        for name in ("general.train", "general.valid", "task.train", "task.valid", "task.test"):
            for line in (text / f"{name}.{lang}").read_text().splitlines():
                assert all(dictionary.index(p) != dictionary.unk() for p in line.split()), line


def test_text_files_are_parallel_and_sized(corpus):
    text = corpus / "text"
    sizes = {"general.train": SIZES["general_train"], "general.valid": SIZES["general_valid"],
             "task.train": SIZES["train"] + SIZES["task_text"], "task.valid": SIZES["dev"],
             "task.test": SIZES["test"]}
    for name, n in sizes.items():
        assert len((text / f"{name}.en").read_text().splitlines()) == n, name
        assert len((text / f"{name}.de").read_text().splitlines()) == n, name
    model = spm.SentencePieceProcessor(model_file=str(corpus / "st" / "spm_en.model"))
    st_dev = [r["src_text"] for r in read_tsv(corpus / "st" / "dev.tsv")[1]]
    decoded = [model.decode(line.split()) for line in (text / "task.valid.en").read_text().splitlines()]
    assert decoded == st_dev


def test_stock_fairseq_builds_the_joint_st_dataset_from_the_config(corpus):
    st = corpus / "st"
    cfg = S2TJointDataConfig(st / "config_st.yaml")
    tgt_dict = Dictionary.load(str(st / cfg.vocab_filename))
    src_dict = Dictionary.load(str(st / cfg.src_vocab_filename))
    bpe = encoders.build_bpe(Namespace(**cfg.bpe_tokenizer))
    src_bpe = encoders.build_bpe(Namespace(**cfg.src_bpe_tokenizer))
    dataset = SpeechToTextJointDatasetCreator.from_tsv(
        str(st), cfg, "dev", tgt_dict, src_dict, None, bpe, None, src_bpe,
        is_train_split=False, epoch=1, seed=1)
    row = read_tsv(st / "dev.tsv")[1][0]
    item = dataset[0]
    assert tuple(item.source.shape) == (int(row["n_frames"]), 80)
    assert tgt_dict.string(item.target, "sentencepiece") == row["tgt_text"]
    assert src_dict.string(item.src_txt_tokens, "sentencepiece") == row["src_text"]
    assert src_dict.unk() not in item.src_txt_tokens.tolist()


def test_corpus_json_records_the_study(corpus):
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["arguments"] == {"seed": 1, "scale": "quick"}
    assert [a["en"] for a in summary["ambiguous"]] == [a.en for a in grammar.AMBIGUOUS]
    speakers = {r["speaker"] for r in read_tsv(corpus / "st" / "train.tsv")[1]}
    assert speakers <= {s["name"] for s in summary["speakers"]} and len(speakers) > 5
    assert 1.0 < summary["mean_seconds"]["train"] < 8.0


def test_rerun_is_a_no_op_and_other_arguments_are_refused(corpus, capsys):
    zip_path = corpus / "st" / "fbank80.zip"
    before = zip_path.stat().st_mtime_ns
    make_corpus.main(["--out", str(corpus), "--seed", "1", "--scale", "quick"])
    assert "nothing to do" in capsys.readouterr().out
    assert zip_path.stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match="seed"):
        make_corpus.main(["--out", str(corpus), "--seed", "2", "--scale", "quick"])


def test_audio_does_not_depend_on_the_number_of_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(make_corpus, "BLOCK", 2)
    speakers = make_corpus.speaker_pool(1)
    jobs = [(i, f"u{i}", "the seal sleeps on the bank", speakers[i]) for i in range(6)]
    one, two = tmp_path / "one.zip", tmp_path / "two.zip"
    make_corpus.write_features(one, jobs, 1, speakers, workers=1)
    make_corpus.write_features(two, jobs, 1, speakers, workers=2)
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as zf:  # and each utterance gets its own voice and noise
        assert len({zf.read(name) for name in zf.namelist()}) == len(jobs)


def test_ambiguous_nouns_and_their_task_synonyms_are_single_english_pieces(corpus):
    """One exported vector per 1-best token: "bank" can only be steered to "shore" (-> "Ufer")
    if each is one piece; plurals add a piece after the stem."""
    model = spm.SentencePieceProcessor(model_file=str(corpus / "st" / "spm_en.model"))
    words = grammar.steering_words()
    assert {"bank", "shore", "bat", "enclosure"} <= set(words)
    for word in words:
        assert model.encode(f"the {word}", out_type=str) == ["\u2581the", "\u2581" + word], word
    assert model.encode("banks", out_type=str)[0] == "\u2581bank"
