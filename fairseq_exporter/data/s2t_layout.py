"""Writers (and readers) for fairseq's speech-to-text data layout, the one
``examples/speech_to_text/prep_*_data.py`` produce and ``--task speech_to_text`` reads:

    DATA/fbank80.zip          uncompressed zip of {id}.npy, (frames, 80) float32 each
    DATA/{split}.tsv          manifest: id audio n_frames [src_text] tgt_text speaker, where
                              audio is "fbank80.zip:OFFSET:LENGTH" (the .npy's byte range)
    DATA/spm_*.model, dict.*.txt   sentencepiece model and the fairseq dictionary made from it
    DATA/config_*.yaml        vocab_filename / bpe_tokenizer (target side), for joint data
                              also src_vocab_filename / src_bpe_tokenizer, feature transforms

Nothing here knows a corpus: MuST-C, the toy corpus and a user's own data are written the
same way.
"""

import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import yaml

# Columns of a joint (exporter / fairseq speech_to_text_joint) manifest, and of the
# single-target manifests fairseq's prep_mustc_data.py writes for --task asr / st.
JOINT_COLUMNS = ("id", "audio", "n_frames", "src_text", "tgt_text", "speaker")
SINGLE_TARGET_COLUMNS = ("id", "audio", "n_frames", "tgt_text", "speaker")

# fairseq's S2T convention (data_utils.gen_vocab): the ids of the four specials, which the
# fairseq Dictionary adds itself, so sentencepiece ids equal dictionary ids.
SPM_SPECIALS = dict(bos_id=0, pad_id=1, eos_id=2, unk_id=3)
SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")

# fairseq's SpecAugment policies (data_utils.S2TDataConfigWriter); "lb" is MuST-C's.
SPECAUGMENT_POLICIES = {
    "lb": dict(time_wrap_W=0, freq_mask_N=1, freq_mask_F=27, time_mask_N=1, time_mask_T=100, time_mask_p=1.0),
    "ld": dict(time_wrap_W=0, freq_mask_N=2, freq_mask_F=27, time_mask_N=2, time_mask_T=100, time_mask_p=1.0),
    "sm": dict(time_wrap_W=0, freq_mask_N=2, freq_mask_F=15, time_mask_N=2, time_mask_T=70, time_mask_p=0.2),
    "ss": dict(time_wrap_W=0, freq_mask_N=2, freq_mask_F=27, time_mask_N=2, time_mask_T=70, time_mask_p=0.2),
}
# The keys of a data config that describe the features rather than the text: what must
# match the ASR model's training when a config is rewritten for new vocabularies.
FEATURE_KEYS = ("input_channels", "input_feat_per_channel", "use_audio_input", "sample_rate",
                "specaugment", "transforms", "feature_transforms", "global_cmvn")


class LayoutError(ValueError):
    """A file of the S2T layout that is missing, malformed or inconsistent; the message names it."""


# ---- features: a zip of .npy --------------------------------------------------------
@dataclass(frozen=True)
class ZipEntry:
    audio: str  # "NAME.zip:OFFSET:LENGTH", what a manifest's audio column holds
    n_frames: int


def npy_bytes(features: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(features, dtype=np.float32))
    return buffer.getvalue()


class FeatureZipWriter:
    """Writes {id}.npy entries into an uncompressed zip (fairseq reads them by byte range,
    so they must be stored, not deflated). The zip is written as ``NAME.zip.partial`` and
    renamed when the ``with`` block ends without error: a zip that exists is complete."""

    def __init__(self, zip_path: Union[str, Path]):
        self.path = Path(zip_path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._zip = None
        self._ids = set()

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = zipfile.ZipFile(self.partial, "w", zipfile.ZIP_STORED, allowZip64=True)
        return self

    def add(self, utt_id: str, features: Union[np.ndarray, bytes]):
        if utt_id in self._ids:
            raise LayoutError(f"{self.path}: utterance id {utt_id} written twice")
        self._ids.add(utt_id)
        data = features if isinstance(features, bytes) else npy_bytes(features)
        # A fixed date: the same features give the same bytes (and offsets) on every run.
        self._zip.writestr(zipfile.ZipInfo(f"{utt_id}.npy"), data)

    def __exit__(self, exc_type, exc, tb):
        self._zip.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        return False


def zip_entries(zip_path: Union[str, Path], name: Optional[str] = None) -> Dict[str, ZipEntry]:
    """{id: ZipEntry} of a zip of .npy, the byte range of each array as fairseq's
    ``data_utils.get_zip_manifest`` gives it, but read from each local file header (which
    may carry an extra field that get_zip_manifest's offset arithmetic ignores). ``name``
    is the zip's name in the audio column (default: the file name, for a config whose
    audio_root is the zip's directory)."""
    zip_path = Path(zip_path)
    label = name if name is not None else zip_path.name
    entries = {}
    with zipfile.ZipFile(zip_path) as zf, open(zip_path, "rb") as raw:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise LayoutError(f"{zip_path}: {info.filename} is compressed; fairseq reads "
                                  "features by byte range, so the zip must be stored (zip -0)")
            raw.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", raw.read(4))
            offset = info.header_offset + 30 + name_len + extra_len
            raw.seek(offset)
            try:
                shape = _npy_shape(raw)
            except ValueError as err:
                raise LayoutError(f"{zip_path}: {info.filename} is not a .npy array ({err})") from err
            entries[Path(info.filename).stem] = ZipEntry(f"{label}:{offset}:{info.file_size}", int(shape[0]))
    return entries


def _npy_shape(f):
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, _ = read_header(f)
    return shape


def audio_file_of(audio: str) -> str:
    """The file part of a manifest's audio field ("x.zip:OFFSET:LENGTH" -> "x.zip"), split
    as fairseq's ``audio_utils.parse_path`` splits it."""
    path, *slice_ptr = audio.split(":")
    return path if len(slice_ptr) in (0, 2) else audio


# ---- manifests ----------------------------------------------------------------------
class ManifestError(LayoutError):
    """A manifest that fairseq would misread; the message names the file, the line and the column."""


# How many bad lines an error lists; the count covers them all.
SHOWN_PROBLEMS = 10


def manifest_problems(path: Path, n_rows: int, problems: Sequence[str], advice: str = "") -> ManifestError:
    """One error for the bad lines of a manifest, each problem a "line N, column K (name): ..." text."""
    shown = "\n  ".join(problems[:SHOWN_PROBLEMS])
    more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    return ManifestError(f"manifest {path}: {len(problems)} problem(s) in {n_rows} row(s):\n  {shown}{more}"
                         + (f"\n{advice}" if advice else ""))


def read_manifest_lines(path: Union[str, Path]):
    """(header, [(line number, fields)]) of a TSV manifest, split as fairseq's S2T dataset
    splits it: text mode (universal newlines), csv without quoting or escapes, so a line is
    a row and a tab ends a field; blank lines are skipped. Field counts are not checked
    here (see ``field_count_problem``). A file that is not UTF-8 is refused with the line,
    column and byte of the first bad byte (fairseq would fail on it with a bare
    UnicodeDecodeError, or read it in another locale's encoding)."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"manifest not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(_not_utf8(path, data, err)) from err
    text = text[1:] if text.startswith("\ufeff") else text  # a byte-order mark is not part of the first column name
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header = lines[0].split("\t") if lines and lines[0] else []
    rows = [(number, line.split("\t")) for number, line in enumerate(lines[1:], start=2) if line]
    return header, rows


def _not_utf8(path: Path, data: bytes, err: UnicodeDecodeError) -> str:
    start = data.rfind(b"\n", 0, err.start) + 1
    line = data.count(b"\n", 0, err.start) + 1
    field = data.count(b"\t", start, err.start)
    header = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace").split("\t")
    name = f" ({header[field]})" if line > 1 and field < len(header) else ""
    utt = data[start:].split(b"\t", 1)[0].decode("utf-8", "replace")
    utt = f" (utterance {utt})" if line > 1 and field > 0 else ""
    return (f"manifest {path} line {line}{utt}, column {field + 1}{name}, byte {err.start - start + 1} of the line "
            f"(byte {err.start} of the file): {data[err.start:err.end]!r} is not UTF-8. fairseq reads "
            "manifests as UTF-8: re-encode the file (e.g. iconv -f latin1 -t utf-8) or rewrite that line.")


def field_count_problem(header: Sequence[str], line: int, fields: Sequence[str]) -> Optional[str]:
    """Why a row does not match its header, or None. csv.DictReader (what fairseq uses)
    would read a short row with its last columns None and a long one with its extra
    fields under the key None: either way every value after a lost or added tab sits in
    the wrong column (tgt_text holding the speaker)."""
    n, h = len(fields), len(header)
    utt = f" (utterance {fields[0]})" if fields and fields[0] else ""
    if n < h:
        shifted = f"; read as it is, {header[n - 1]} would be {fields[n - 1][:40]!r}" if n > 1 else ""
        return (f"line {line}{utt}, column {n + 1} ({header[n]}): missing; the line has {n} tab-separated "
                f"field(s) where the header has {h}{shifted}")
    if n > h:
        return (f"line {line}{utt}, column {h + 1}: {n} tab-separated fields where the header has {h} "
                f"({' '.join(header)}); {fields[h][:40]!r} has no column")
    return None


FIELD_COUNT_ADVICE = ("A lost or added tab moves every value after it into another column. Fields are "
                      "separated by single tabs and cannot contain tabs (fairseq reads manifests "
                      "without quoting).")


def read_manifest(path: Union[str, Path], required: Sequence[str] = ()) -> List[Dict[str, str]]:
    """Rows of a TSV manifest as dicts, read exactly as fairseq's S2T dataset reads them
    (tab-separated, no quoting, no escapes); a row with another field count than the
    header is an error naming its line."""
    path = Path(path)
    header, lines = read_manifest_lines(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(f"manifest {path} lacks column(s) {', '.join(missing)} "
                            f"(header: {' '.join(header) or 'none'})")
    problems = [p for p in (field_count_problem(header, line, fields) for line, fields in lines) if p]
    if problems:
        raise manifest_problems(path, len(lines), problems, FIELD_COUNT_ADVICE)
    return [dict(zip(header, fields)) for _, fields in lines]


def write_manifest(path: Union[str, Path], rows: Iterable[Union[dict, Sequence]],
                   columns: Sequence[str] = JOINT_COLUMNS):
    """Write a TSV manifest. Text is written as it is: fairseq reads manifests without
    quoting or escapes, so a tab or newline inside a field is refused, not escaped."""
    path = Path(path)
    lines = ["\t".join(columns)]
    for row in rows:
        values = [row[c] for c in columns] if isinstance(row, dict) else list(row)
        if len(values) != len(columns):
            raise LayoutError(f"{path}: row {values[:1]} has {len(values)} fields, not {len(columns)}")
        values = [str(v) for v in values]
        if any("\t" in v or "\n" in v or "\r" in v for v in values):
            raise LayoutError(f"{path}: a field of utterance {values[0]} contains a tab or newline")
        lines.append("\t".join(values))
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


# ---- vocabularies -------------------------------------------------------------------
def train_sentencepiece(text_files: Sequence[Union[str, Path]], model_prefix: Union[str, Path],
                        vocab_size: int, model_type: str = "unigram", num_threads: int = 2,
                        input_sentence_size: int = 0, user_defined_symbols: Sequence[str] = ()):
    """Train a sentencepiece model as fairseq's ``data_utils.gen_vocab`` does (full
    character coverage, fairseq's special-symbol ids); returns the ``.model`` path.
    ``hard_vocab_limit`` is off so a small corpus gets a smaller vocabulary instead of an
    error. ``input_sentence_size`` > 0 samples that many lines (for very large text);
    ``user_defined_symbols`` are pieces kept whole."""
    import sentencepiece as spm

    model_prefix = Path(model_prefix)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    for f in text_files:
        if not Path(f).is_file():
            raise LayoutError(f"sentencepiece training text not found: {f}")
    options = dict(input=",".join(str(f) for f in text_files), model_prefix=str(model_prefix),
                   model_type=model_type, vocab_size=vocab_size, character_coverage=1.0,
                   hard_vocab_limit=False, num_threads=num_threads, minloglevel=2, **SPM_SPECIALS)
    if user_defined_symbols:
        options["user_defined_symbols"] = list(user_defined_symbols)
    if input_sentence_size > 0:
        options.update(input_sentence_size=input_sentence_size, shuffle_input_sentence=True)
    spm.SentencePieceTrainer.train(**options)
    return Path(f"{model_prefix}.model")


def write_dictionary_from_sentencepiece(spm_model: Union[str, Path], dict_path: Union[str, Path]):
    """The fairseq dictionary of a sentencepiece model: its pieces in id order without the
    four specials (fairseq's Dictionary adds those itself at the same ids), count 1 each."""
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=str(spm_model))
    for i, piece in enumerate(SPECIAL_PIECES):
        if model.id_to_piece(i) != piece:
            raise LayoutError(f"{spm_model}: id {i} is {model.id_to_piece(i)!r}, not {piece!r}; "
                              "train it with bos_id=0 pad_id=1 eos_id=2 unk_id=3 (fairseq's convention)")
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    Path(dict_path).write_text("".join(f"{p} 1\n" for p in pieces if p not in SPECIAL_PIECES),
                               encoding="utf-8")


# ---- tokenizers and data configs ------------------------------------------------------
def bpe_tokenizer_spec(spec: Optional[str], what: str = "bpe") -> Optional[dict]:
    """A config's ``bpe_tokenizer`` entry from a short command-line form: a sentencepiece
    ``.model`` path, a JSON object passed through as it is (any fairseq bpe, e.g.
    '{"bpe": "subword_nmt", "bpe_codes": "codes.en"}'), or "none"/empty for text already
    split into dictionary symbols."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    spec = spec.strip()
    if spec.startswith("{"):
        return json_object(spec, what)
    if not Path(spec).is_file():
        raise LayoutError(f"{what} {spec}: no such file (give a sentencepiece .model, a JSON "
                          "bpe_tokenizer object, or none)")
    return {"bpe": "sentencepiece", "sentencepiece_model": str(Path(spec).resolve())}


def pre_tokenizer_spec(spec: Optional[str], what: str = "pre-tokenizer") -> Optional[dict]:
    """A config's ``pre_tokenizer`` entry: a JSON object such as
    '{"tokenizer": "moses", "source_lang": "en"}', or "none"/empty."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    return json_object(spec.strip(), what)


def json_object(text: str, what: str) -> dict:
    """``text`` parsed as a JSON object, or a LayoutError naming ``what`` (an option, a file)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise LayoutError(f"{what}: not a JSON object: {text!r} ({err})") from err
    if not isinstance(value, dict):
        raise LayoutError(f"{what}: not a JSON object: {text!r}")
    return value


def default_feature_settings(specaugment: Optional[str] = "lb", cmvn: str = "utterance") -> dict:
    """The feature part of fairseq's MuST-C config (data_utils.gen_config_yaml):
    80-dim fbank, per-utterance CMVN, SpecAugment on training splits only."""
    settings = {"input_channels": 1, "input_feat_per_channel": 80}
    if specaugment is not None:
        settings["specaugment"] = dict(SPECAUGMENT_POLICIES[specaugment])
        settings["transforms"] = {"_train": [f"{cmvn}_cmvn", "specaugment"], "*": [f"{cmvn}_cmvn"]}
    else:
        settings["transforms"] = {"*": [f"{cmvn}_cmvn"]}
    return settings


def feature_settings_of(config_yaml: Union[str, Path]) -> dict:
    """The feature keys of an existing data config (e.g. the config_asr.yaml an ASR model
    was trained with), so that a new config normalizes and augments features alike."""
    config_yaml = Path(config_yaml)
    if not config_yaml.is_file():
        raise LayoutError(f"data config not found: {config_yaml}")
    with open(config_yaml) as f:
        config = yaml.safe_load(f) or {}
    return {k: config[k] for k in FEATURE_KEYS if k in config}


def write_data_config(path: Union[str, Path], *, vocab_filename: str,
                      bpe_tokenizer: Optional[dict] = None, pre_tokenizer: Optional[dict] = None,
                      src_vocab_filename: Optional[str] = None, src_bpe_tokenizer: Optional[dict] = None,
                      src_pre_tokenizer: Optional[dict] = None, features: Optional[dict] = None,
                      audio_root: Optional[str] = None, extra: Optional[dict] = None,
                      header: str = ""):
    """An S2T data config. The target side (``vocab_filename``, ``bpe_tokenizer``,
    ``pre_tokenizer``) is what the model writes; the source side (``src_*``), read by
    joint tasks such as speech_to_text_exporter, is the transcript's. Dictionary file names
    are relative to the data dir, as fairseq resolves them; relative audio paths in the
    manifests are relative to ``audio_root`` (fairseq's default: the working directory).
    ``header`` (comment lines) is written first."""
    config = dict(features if features is not None else default_feature_settings())
    if audio_root is not None:
        config["audio_root"] = audio_root
    config["vocab_filename"] = vocab_filename
    for key, value in (("bpe_tokenizer", bpe_tokenizer), ("pre_tokenizer", pre_tokenizer),
                       ("src_vocab_filename", src_vocab_filename),
                       ("src_bpe_tokenizer", src_bpe_tokenizer), ("src_pre_tokenizer", src_pre_tokenizer)):
        if value is not None:
            config[key] = value
    config.update(extra or {})
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
    return path


class TextEncoder:
    """Raw text -> the space-separated symbols a dictionary holds, through the same fairseq
    pre-tokenizer and bpe an S2T data config names (what the dataset applies to src_text
    and tgt_text), so text binarized with fairseq-preprocess matches the speech data."""

    def __init__(self, pre_tokenizer: Optional[dict], bpe_tokenizer: Optional[dict]):
        from argparse import Namespace

        from fairseq.data import encoders

        self.pre_tokenizer = encoders.build_tokenizer(Namespace(**pre_tokenizer)) if pre_tokenizer else None
        self.bpe = encoders.build_bpe(Namespace(**bpe_tokenizer)) if bpe_tokenizer else None

    @classmethod
    def from_config(cls, config_yaml: Union[str, Path], side: str):
        """``side``: "src" (src_pre_tokenizer, src_bpe_tokenizer) or "tgt"."""
        config_yaml = Path(config_yaml)
        if not config_yaml.is_file():
            raise LayoutError(f"data config not found: {config_yaml}")
        with open(config_yaml) as f:
            config = yaml.safe_load(f) or {}
        prefix = "src_" if side == "src" else ""
        return cls(config.get(f"{prefix}pre_tokenizer"), config.get(f"{prefix}bpe_tokenizer"))

    def encode(self, text: str) -> str:
        if self.pre_tokenizer is not None:
            text = self.pre_tokenizer.encode(text)
        if self.bpe is not None:
            text = self.bpe.encode(text)
        return text


def write_text_lines(path: Union[str, Path], lines: Iterable[str]):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
