"""MuST-C for the exporter study, without torchaudio: what recipes/mustc/run.sh prepares.

    python -m fairseq_exporter.cli.prep_mustc features --mustc-root DIR --lang de --out DATA
        MuST-C release (v1.0 / v2.0: en-de/data/{split}/wav/*.wav, txt/{split}.{yaml,en,de})
        -> DATA/fbank80.zip, DATA/{split}.tsv (id audio n_frames src_text tgt_text speaker)
           and DATA/{split}_asr.tsv (id audio n_frames tgt_text speaker, tgt_text = English)
    python -m fairseq_exporter.cli.prep_mustc vocab --text-prefix TEXT --langs en de --data DATA
        DATA/spm_{en,de}.model and the fairseq dictionaries DATA/dict.{en,de}.txt made from them
    python -m fairseq_exporter.cli.prep_mustc config --data DATA --src-dict F --tgt-dict F \\
            --src-bpe SPEC --tgt-bpe SPEC
        DATA/config_st.yaml (translation in the MT target vocabulary, transcript in the MT
        source vocabulary) and DATA/config_asr.yaml (transcript in the MT source vocabulary)
    python -m fairseq_exporter.cli.prep_mustc encode --config DATA/config_st.yaml --out-dir BPE \\
            --src raw/train.en --tgt raw/train.de
        raw text -> BPE/train.{en,de} in dictionary symbols, through the config's own tokenizers

Segments are cut and named exactly as fairseq's examples/speech_to_text/prep_mustc_data.py
cuts and names them (ids ``{talk}_{i}``), features are the same Kaldi fbank80 (through
kaldi-native-fbank, see fairseq_exporter.features), and the manifests are filtered by the
same rules, so ids and features line up with a fairseq user's own MuST-C preparation.
"""

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf
import yaml

from fairseq_exporter.data import s2t_layout
from fairseq_exporter.features import SAMPLE_RATE, AudioReadError, fbank80, read_audio, resample

SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
CONFIG_MARK = "# written by python -m fairseq_exporter.cli.prep_mustc config\n"
# fairseq's filter_manifest_df: utterances it drops from every split, and from train only.
MIN_FRAMES, MAX_TRAIN_FRAMES = 5, 3000


class MustcError(ValueError):
    """Missing or damaged MuST-C data; the message names the file, talk and segment."""


@dataclass(frozen=True)
class Segment:
    id: str  # {talk}_{i}, fairseq's id
    talk: str  # the wav file's stem, e.g. ted_767
    index: int  # position in {split}.yaml (0-based), the same line in {split}.en / {split}.{lang}
    offset: str  # seconds, as the yaml writes them
    duration: str
    speaker: str
    en: str
    tgt: str


# ---- the release tree ---------------------------------------------------------------
def release_dir(mustc_root: Path, lang: str) -> Path:
    """The ``en-{lang}`` directory of a MuST-C release: ``--mustc-root`` may be the folder
    the archive was unpacked in (holding en-de/) or en-de/ itself. v1.0 and v2.0 share
    this layout: en-{lang}/data/{split}/{wav,txt}."""
    for candidate in (mustc_root / f"en-{lang}", mustc_root):
        if (candidate / "data").is_dir():
            return candidate
    raise MustcError(f"--mustc-root {mustc_root}: neither {mustc_root / f'en-{lang}' / 'data'} nor "
                     f"{mustc_root / 'data'} exists; point it at the folder holding en-{lang}/ "
                     "(MuST-C v1.0 or v2.0, unpacked)")


def read_segments(release: Path, split: str, lang: str) -> Tuple[Path, List[Segment]]:
    """The wav folder and the segments of one split, in fairseq's order and with its ids."""
    txt, wav_dir = release / "data" / split / "txt", release / "data" / split / "wav"
    yaml_path = txt / f"{split}.yaml"
    for path in (yaml_path, txt / f"{split}.en", txt / f"{split}.{lang}", wav_dir):
        if not path.exists():
            raise MustcError(f"MuST-C split {split}: {path} does not exist")
    with open(yaml_path, encoding="utf-8") as f:
        # BaseLoader, as fairseq: every value stays a string (see the sort below).
        entries = yaml.load(f, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    if not isinstance(entries, list):
        raise MustcError(f"{yaml_path}: expected a list of segments")
    texts = {}
    for language in ("en", lang):
        path = txt / f"{split}.{language}"
        texts[language] = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        if len(texts[language]) != len(entries):
            raise MustcError(f"{path} has {len(texts[language])} lines but {yaml_path} has "
                             f"{len(entries)} segments: the files come from different releases")
    for i, entry in enumerate(entries):
        missing = [k for k in ("wav", "offset", "duration") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise MustcError(f"{yaml_path}: entry {i + 1} lacks {', '.join(missing)}")
    segments, seen = [], set()
    indexed = list(enumerate(entries))
    for wav_name, group in groupby(indexed, key=lambda item: item[1]["wav"]):
        talk = Path(wav_name).stem
        if talk in seen:  # fairseq would give two segments the same id
            raise MustcError(f"{yaml_path}: the segments of talk {talk} are not consecutive")
        seen.add(talk)
        # fairseq sorts a talk's segments by the offset *string*; the same order gives the
        # same ids (ted_767_0, ...) as a fairseq user's manifests.
        for i, (index, entry) in enumerate(sorted(group, key=lambda item: item[1]["offset"])):
            segments.append(Segment(f"{talk}_{i}", talk, index, entry["offset"], entry["duration"],
                                    entry.get("speaker_id", "spk"), texts["en"][index], texts[lang][index]))
    return wav_dir, segments


# ---- features -----------------------------------------------------------------------
def _describe(segment: Segment, split: str) -> str:
    return (f"segment {segment.id} ({split}.yaml entry {segment.index + 1}: offset {segment.offset} s, "
            f"duration {segment.duration} s)")


def _readable_seconds(path: Path) -> Optional[float]:
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:  # noqa: BLE001  (unreadable header: nothing can be read)
        return None


def talk_features(job) -> List[Tuple[str, bytes, int]]:
    """[(id, .npy bytes, n_frames)] of the segments of one talk, read once and cut."""
    split, wav_path, segments, max_overrun = job
    talk = segments[0].talk
    try:
        wav, sample_rate = read_audio(wav_path)
    except AudioReadError as err:
        readable = _readable_seconds(wav_path)
        lost = [s for s in segments if readable is None or float(s.offset) + float(s.duration) > readable]
        where = (f"{_describe(lost[0], split)} lies past the {readable or 0:.2f} s that can be read"
                 if lost else f"its {len(segments)} segments (last {segments[-1].id}) still lie in "
                              f"the readable {readable:.2f} s, but the file is damaged")
        raise MustcError(f"MuST-C talk {talk}: {err}; {where}. Unpack the release again.") from None
    out = []
    for segment in segments:
        start = int(float(segment.offset) * sample_rate)  # fairseq's arithmetic
        n = int(float(segment.duration) * sample_rate)
        if start < 0 or n <= 0:
            raise MustcError(f"MuST-C talk {talk} ({wav_path}): {_describe(segment, split)} has a "
                             "negative offset or an empty duration")
        overrun = (start + n - len(wav)) / sample_rate
        if overrun > max_overrun:
            raise MustcError(
                f"MuST-C talk {talk} ({wav_path}, {len(wav) / sample_rate:.2f} s): "
                f"{_describe(segment, split)} ends {overrun:.3f} s past the end of the wav. "
                "The yaml and the audio disagree: unpack the release again, or pass "
                "--max-overrun-seconds to cut such segments at the end of the file")
        piece = wav[start:start + n]
        if sample_rate != SAMPLE_RATE:  # MuST-C is 16 kHz; other audio is brought to it
            piece = resample(piece, sample_rate, SAMPLE_RATE)
        features = fbank80(piece, SAMPLE_RATE)
        out.append((segment.id, s2t_layout.npy_bytes(features), features.shape[0]))
    return out


def _jobs(split: str, wav_dir: Path, segments: List[Segment], max_overrun: float):
    for talk, group in groupby(segments, key=lambda s: s.talk):
        group = list(group)
        wav_path = wav_dir / f"{talk}.wav"
        if not wav_path.is_file():
            raise MustcError(f"MuST-C talk {talk}: {wav_path} does not exist "
                             f"(needed by {_describe(group[0], split)})")
        yield split, wav_path, group, max_overrun


def write_features(zip_path: Path, split_segments: Dict[str, Tuple[Path, List[Segment]]],
                   workers: int, max_overrun: float):
    """Every segment's fbank80 into one zip; talks are processed in parallel, written in order."""
    jobs = [job for split, (wav_dir, segments) in split_segments.items()
            for job in _jobs(split, wav_dir, segments, max_overrun)]
    total = sum(len(job[2]) for job in jobs)
    done, started = 0, time.time()
    # concurrent.futures, not multiprocessing.Pool: a worker's error (a truncated wav, say) must
    # reach the user, and Pool.terminate() after a failed imap can deadlock on its task queue
    # (seen: a hung prep with its workers already gone).
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if workers > 1 else None
    try:
        results = pool.map(talk_features, jobs) if pool else map(talk_features, jobs)
        with s2t_layout.FeatureZipWriter(zip_path) as writer:
            for rendered in results:
                for utt_id, data, _ in rendered:
                    writer.add(utt_id, data)
                done += len(rendered)
                if done == total or done // 5000 != (done - len(rendered)) // 5000:
                    print(f"| fbank80 {done}/{total} segments ({time.time() - started:.0f} s)", flush=True)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)


def manifest_rows(segments: List[Segment], entries: Dict[str, s2t_layout.ZipEntry], split: str,
                  joint: bool):
    """Rows kept by fairseq's filter_manifest_df, and a count per reason for dropping."""
    is_train = split.startswith("train")
    dropped = {f"short speech (<{MIN_FRAMES} frames)": 0, "empty sentence": 0}
    if is_train:
        dropped[f"long speech (>{MAX_TRAIN_FRAMES} frames)"] = 0
    rows = []
    for s in segments:
        entry = entries.get(s.id)
        if entry is None:
            raise MustcError(f"{split}: segment {s.id} has no features in the zip; remove the zip to recompute")
        if entry.n_frames < MIN_FRAMES:
            dropped[f"short speech (<{MIN_FRAMES} frames)"] += 1
        elif not s.en or (joint and not s.tgt):
            dropped["empty sentence"] += 1
        elif is_train and entry.n_frames > MAX_TRAIN_FRAMES:
            dropped[f"long speech (>{MAX_TRAIN_FRAMES} frames)"] += 1
        elif joint:
            rows.append((s.id, entry.audio, entry.n_frames, s.en, s.tgt, s.speaker))
        else:
            rows.append((s.id, entry.audio, entry.n_frames, s.en, s.speaker))
    return rows, dropped


def prepare_features(mustc_root: Path, lang: str, out: Path, splits: Sequence[str], workers: int,
                     max_overrun: float):
    release = release_dir(mustc_root, lang)
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / "fbank80.zip"
    manifests = [out / f"{split}{suffix}.tsv" for split in splits for suffix in ("", "_asr")]
    if zip_path.exists() and all(m.exists() for m in manifests):
        print(f"| {zip_path} and the manifests of {', '.join(splits)} exist: nothing to do")
        return
    split_segments = {split: read_segments(release, split, lang) for split in splits}
    for split, (_, segments) in split_segments.items():
        print(f"| {split}: {len(segments)} segments in {len({s.talk for s in segments})} talks")
    if zip_path.exists():
        print(f"| {zip_path} exists: features kept, manifests rewritten")
    else:
        write_features(zip_path, split_segments, workers, max_overrun)
    entries = s2t_layout.zip_entries(zip_path)
    for split, (_, segments) in split_segments.items():
        for joint, path, columns in ((True, out / f"{split}.tsv", s2t_layout.JOINT_COLUMNS),
                                     (False, out / f"{split}_asr.tsv", s2t_layout.SINGLE_TARGET_COLUMNS)):
            rows, dropped = manifest_rows(segments, entries, split, joint)
            s2t_layout.write_manifest(path, rows, columns)
            print(f"| {path.name}: {len(rows)} utterances; dropped "
                  + ", ".join(f"{reason}: {n}" for reason, n in dropped.items()))


# ---- vocabularies, configs, text --------------------------------------------------------
def prepare_vocab(text_prefix: str, langs: Sequence[str], data: Path, vocab_size: int,
                  model_type: str, input_sentence_size: int):
    """data/spm_{lang}.model and data/dict.{lang}.txt from the text {text_prefix}.{lang}."""
    data.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        model = s2t_layout.train_sentencepiece([Path(f"{text_prefix}.{lang}")], data / f"spm_{lang}",
                                               vocab_size, model_type, input_sentence_size=input_sentence_size)
        dict_path = data / f"dict.{lang}.txt"
        s2t_layout.write_dictionary_from_sentencepiece(model, dict_path)
        n = len(dict_path.read_text(encoding="utf-8").splitlines())
        print(f"| {model} and {dict_path} ({n} symbols + 4 specials)")


def _dictionary_reference(data: Path, dictionary: Path) -> str:
    """How a data config names ``dictionary``: relative to the data dir when it lies there
    (fairseq joins the two), else its absolute path (the join then yields it unchanged).
    Never copied: a copy could overwrite a dictionary another model was trained with."""
    if not dictionary.is_file():
        raise MustcError(f"dictionary not found: {dictionary}")
    dictionary = dictionary.resolve()
    try:
        return str(dictionary.relative_to(data.resolve()))
    except ValueError:
        return str(dictionary)


def _writable_config(path: Path) -> Path:
    """Refuse to overwrite a data config this command did not write (such as the
    config_asr.yaml a fairseq ASR was trained with)."""
    if path.exists() and not path.read_text(encoding="utf-8").startswith(CONFIG_MARK):
        raise MustcError(f"{path} exists and was not written by prep_mustc config; pick another "
                         "name with --st-config / --asr-config")
    return path


def prepare_configs(data: Path, src_dict: Path, tgt_dict: Path, src_bpe: dict, tgt_bpe: dict,
                    src_pre: dict, tgt_pre: dict, features: dict, st_config: str, asr_config: str):
    src_name, tgt_name = _dictionary_reference(data, src_dict), _dictionary_reference(data, tgt_dict)
    audio_root = str(data.resolve())  # relative audio paths in the manifests start at the data dir
    st = s2t_layout.write_data_config(
        _writable_config(data / st_config), vocab_filename=tgt_name, bpe_tokenizer=tgt_bpe,
        pre_tokenizer=tgt_pre, src_vocab_filename=src_name, src_bpe_tokenizer=src_bpe,
        src_pre_tokenizer=src_pre, features=features, audio_root=audio_root, header=CONFIG_MARK)
    # The ASR writes the MT's source vocabulary: that is what lets the exporter couple them.
    asr = s2t_layout.write_data_config(
        _writable_config(data / asr_config), vocab_filename=src_name, bpe_tokenizer=src_bpe,
        pre_tokenizer=src_pre, features=features, audio_root=audio_root, header=CONFIG_MARK)
    print(f"| {st}: transcript {src_name}, translation {tgt_name}")
    print(f"| {asr}: transcript {src_name}")


def encode_text(config: Path, out_dir: Path, files_by_side: Dict[str, Sequence[Path]]):
    """Each raw text file -> out_dir/(same name), in dictionary symbols."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for side, files in files_by_side.items():
        encoder = s2t_layout.TextEncoder.from_config(config, side)
        for path in files:
            if not path.is_file():
                raise MustcError(f"--{side} {path}: no such file")
            with open(path, encoding="utf-8") as raw:
                s2t_layout.write_text_lines(out_dir / path.name, (encoder.encode(line.rstrip("\n")) for line in raw))
            print(f"| {path} -> {out_dir / path.name} ({side} tokenizers of {config.name})")


# ---- command line -----------------------------------------------------------------------
def _build_parser():
    parser = argparse.ArgumentParser(prog="python -m fairseq_exporter.cli.prep_mustc",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("features", help="MuST-C release -> fbank80.zip + manifests")
    p.add_argument("--mustc-root", type=Path, required=True,
                   help="the folder holding en-{lang}/ (or en-{lang}/ itself)")
    p.add_argument("--lang", default="de", help="target language of the release (default: de)")
    p.add_argument("--out", type=Path, required=True, help="data dir to write")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), help="default: %(default)s")
    p.add_argument("--workers", type=int, default=min(4, multiprocessing.cpu_count()),
                   help="processes computing fbank, one talk at a time (default: %(default)s)")
    p.add_argument("--max-overrun-seconds", type=float, default=0.0,
                   help="tolerate segments that end this far past the end of their wav "
                        "(cut there) instead of stopping (default: 0)")

    p = commands.add_parser("vocab", help="sentencepiece models + fairseq dictionaries of parallel text")
    p.add_argument("--text-prefix", required=True, help="raw text PREFIX.{lang}, one sentence a line")
    p.add_argument("--langs", nargs="+", default=["en", "de"], help="default: %(default)s")
    p.add_argument("--data", type=Path, required=True, help="writes DATA/spm_{lang}.model, DATA/dict.{lang}.txt")
    p.add_argument("--vocab-size", type=int, default=8000, help="per language (default: %(default)s)")
    p.add_argument("--model-type", default="unigram", choices=("unigram", "bpe", "char", "word"))
    p.add_argument("--input-sentence-size", type=int, default=0,
                   help="train on a random sample of this many lines (0: all)")

    p = commands.add_parser("config", help="config_st.yaml + config_asr.yaml for the MT's vocabularies")
    p.add_argument("--data", type=Path, required=True, help="the data dir (holding the manifests)")
    p.add_argument("--src-dict", type=Path, required=True, help="the MT's source dictionary (dict.en.txt)")
    p.add_argument("--tgt-dict", type=Path, required=True, help="the MT's target dictionary (dict.de.txt)")
    for side, lang in (("src", "en"), ("tgt", "de")):
        p.add_argument(f"--{side}-bpe", default="none",
                       help=f"the MT's {side} subword model: a sentencepiece .model, a JSON fairseq "
                            "bpe_tokenizer ('{\"bpe\": \"subword_nmt\", \"bpe_codes\": \"...\"}') or none")
        p.add_argument(f"--{side}-pre-tokenizer", default="none",
                       help=f"JSON fairseq pre_tokenizer of the MT's {side} side "
                            f"('{{\"tokenizer\": \"moses\", \"source_lang\": \"{lang}\"}}') or none")
    p.add_argument("--st-config", default="config_st.yaml",
                   help="name of the exporter task's config in DATA (default: %(default)s)")
    p.add_argument("--asr-config", default="config_asr.yaml",
                   help="name of the config for training an ASR on the MT source vocabulary (default: %(default)s)")
    p.add_argument("--features-like", type=Path,
                   help="copy the feature settings (CMVN, SpecAugment, ...) from this data config, "
                        "e.g. the config_asr.yaml your ASR was trained with (default: fairseq's MuST-C ones)")
    p.add_argument("--specaugment", default="lb", choices=sorted(s2t_layout.SPECAUGMENT_POLICIES),
                   help="SpecAugment policy when --features-like is not given (default: lb, MuST-C's)")

    p = commands.add_parser("encode", help="raw text -> dictionary symbols, with a config's tokenizers")
    p.add_argument("--config", type=Path, required=True, help="data config yaml naming the tokenizers")
    p.add_argument("--out-dir", type=Path, required=True, help="encoded files keep their names here")
    p.add_argument("--src", type=Path, nargs="*", default=[],
                   help="files to encode with src_pre_tokenizer + src_bpe_tokenizer (the transcript side)")
    p.add_argument("--tgt", type=Path, nargs="*", default=[],
                   help="files to encode with pre_tokenizer + bpe_tokenizer (the translation side)")
    return parser


def main(argv=None):
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "features":
            prepare_features(args.mustc_root, args.lang, args.out, args.splits, max(1, args.workers),
                             args.max_overrun_seconds)
        elif args.command == "vocab":
            prepare_vocab(args.text_prefix, args.langs, args.data, args.vocab_size, args.model_type,
                          args.input_sentence_size)
        elif args.command == "config":
            features = (s2t_layout.feature_settings_of(args.features_like) if args.features_like
                        else s2t_layout.default_feature_settings(args.specaugment))
            prepare_configs(args.data, args.src_dict, args.tgt_dict,
                            s2t_layout.bpe_tokenizer_spec(args.src_bpe, "--src-bpe"),
                            s2t_layout.bpe_tokenizer_spec(args.tgt_bpe, "--tgt-bpe"),
                            s2t_layout.pre_tokenizer_spec(args.src_pre_tokenizer, "--src-pre-tokenizer"),
                            s2t_layout.pre_tokenizer_spec(args.tgt_pre_tokenizer, "--tgt-pre-tokenizer"),
                            features, args.st_config, args.asr_config)
        else:
            encode_text(args.config, args.out_dir, {"src": args.src, "tgt": args.tgt})
    except (MustcError, s2t_layout.LayoutError) as err:
        parser.exit(1, f"prep_mustc {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
