"""(speech, transcript, translation) data for the exporter task.

fairseq's ``SpeechToTextJointDataset`` already yields speech features, the source
transcript in the source vocabulary (``src_txt_tokens``) and the translation, from the
stock S2T manifests; we add what its users trip over: manifests checked column by
column, audio files turned into fbank without torchaudio, and errors that name the
utterance and file at fault.
"""

import difflib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from fairseq.data.audio.audio_utils import (
    get_features_or_waveform,
    is_npy_data,
    is_sf_audio_data,
    parse_path,
)
from fairseq.data.audio.speech_to_text_joint_dataset import (
    SpeechToTextJointDataset,
    SpeechToTextJointDatasetCreator,
)

from fairseq_exporter.data import s2t_layout
from fairseq_exporter.data.s2t_layout import ManifestError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "audio", "n_frames", "src_text", "tgt_text")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioError(ValueError):
    pass


@dataclass
class SpeechLimits:
    """What the coupled model can take, known once it is built (fairseq-train and
    fairseq-generate build the model before loading data): utterances outside these
    limits are dropped when the manifest is read, with a count in the log, instead of
    failing in the middle of an epoch."""

    min_frames: int  # fewer input frames leave nothing after the ASR's convolutional subsampling
    max_frames: int  # --max-source-positions of the task and of the ASR checkpoint
    max_target_tokens: int  # the MT decoder's max positions (translation + </s>)


def _column_hint(missing: str, header) -> str:
    close = difflib.get_close_matches(missing, header, n=1, cutoff=0.6)
    return f" (is {close[0]!r} a typo for {missing!r}?)" if close else ""


def _audio_problem(audio_root: Path, audio: str, zip_sizes: Dict[str, int]) -> Optional[str]:
    """Why ``audio`` (a manifest ``audio`` field) cannot be read, checked without
    decoding it: the file exists, and a zip entry lies inside the zip and starts like
    .npy or audio data. Content errors past that surface when the utterance is read."""
    path, slice_ptr = parse_path((audio_root / audio).as_posix())
    if not slice_ptr:
        return None if os.path.isfile(path) else "no such file"
    if path not in zip_sizes:
        zip_sizes[path] = os.path.getsize(path) if os.path.isfile(path) else -1
    if zip_sizes[path] < 0:
        return "no such file"
    offset, length = slice_ptr
    if offset + length > zip_sizes[path]:
        return (f"entry at bytes {offset}..{offset + length} runs past the end of the zip "
                f"({zip_sizes[path]} bytes): truncated")
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(4)
    if len(head) < 3 or not (is_npy_data(head) or is_sf_audio_data(head)):
        return f"entry at byte {offset} is neither .npy features nor wav/flac/ogg audio (starts {head!r})"
    return None


# How many utterances a load-time warning names; the count covers them all.
SHOWN_EXAMPLES = 3


class ExporterItem(NamedTuple):
    """fairseq's SpeechToTextJointDatasetItem and the utterance it is: (split, manifest id)."""
    index: int
    source: torch.Tensor
    target: Optional[torch.Tensor] = None
    src_txt_tokens: Optional[torch.Tensor] = None
    tgt_lang_tag: Optional[int] = None
    src_lang_tag: Optional[int] = None
    tgt_alignment: Optional[torch.Tensor] = None
    utterance: Optional[Tuple[str, str]] = None


class ExporterDataset(SpeechToTextJointDataset):
    manifest: Optional[Path] = None  # the TSV this split was read from, for error messages
    lines: Optional[List[int]] = None  # the manifest line of each utterance, for messages
    tgt_unk: Optional[List[Tuple[int, List[str]]]] = None  # (index, pieces the target side maps to <unk>)

    def __getitem__(self, index: int) -> "ExporterItem":
        return ExporterItem(*super().__getitem__(index), utterance=(self.split, self.ids[index]))

    def collater(self, samples: List["ExporterItem"]) -> Dict:
        """fairseq's batch plus ``net_input["utterance"]``: the (split, manifest id) of each row. The
        batch's ``id`` is each split's own index (fairseq numbers every --train-subset
        split from 0), so it cannot name an utterance of several splits."""
        if not samples:
            return {}
        # fairseq sorts the rows by length: number them 0..B-1 to read its order back
        out = super().collater([x._replace(index=position) for position, x in enumerate(samples)])
        order = out["id"].tolist()
        out["id"] = torch.tensor([samples[p].index for p in order], dtype=torch.long)
        out["net_input"]["utterance"] = [samples[p].utterance for p in order]
        return out

    def _where(self, index: int) -> str:
        line = f" line {self.lines[index]}" if self.lines is not None else ""
        return (f"manifest {self.manifest}{line}" if self.manifest is not None
                else f"split {self.split}{line}")

    def get_tgt_lens_and_check_oov(self):
        """fairseq's target lengths and OOV rate, from the one encoding of each translation
        fairseq makes at load time; the translations holding <unk> are kept for
        ``warn_about_unk`` (the same pass, not a second encoding)."""
        tgt_lens, n_tokens, n_oov, self.tgt_unk = [], 0, 0, []
        if self.tgt_texts is None:
            return [0 for _ in range(self.n_samples)]
        for i in range(self.n_samples):
            length, unk = _length_and_unk_pieces(self.get_tokenized_tgt_text(i), self.tgt_dict)
            tgt_lens.append(length)
            if unk:
                self.tgt_unk.append((i, unk))
            n_tokens += tgt_lens[-1]
            n_oov += len(unk)
        logger.info(f"'{self.split}' has {n_oov / max(n_tokens, 1) * 100:.2f}% OOV")
        return tgt_lens

    def src_unk(self) -> List[Tuple[int, List[str]]]:
        """(index, pieces) of the transcripts the source bpe and dictionary map to <unk>;
        one encoding of each transcript, as __getitem__ encodes it."""
        if self.src_texts is None or self.src_dict is None:
            return []
        found = []
        for i in range(self.n_samples):
            unk = _unk_pieces(self.get_tokenized_src_text(i), self.src_dict)
            if unk:
                found.append((i, unk))
        return found

    def warn_about_unk(self):
        """A warning per side whose texts hold characters that reach the model as <unk>
        (a sentencepiece model trained on other text, a dictionary that is not the
        model's): counted, with examples, never silent."""
        tsv = self.manifest if self.manifest is not None else f"split {self.split}"
        for side, found in (("src", self.src_unk()), ("tgt", self.tgt_unk or [])):
            if not found:
                continue
            what = "transcripts (src_text)" if side == "src" else "translations (tgt_text)"
            examples = ", ".join(
                f"{self.ids[i]}{f' (line {self.lines[i]})' if self.lines is not None else ''} "
                + " ".join(repr(p) for p in dict.fromkeys(pieces))
                for i, pieces in found[:SHOWN_EXAMPLES])
            more = ", ..." if len(found) > SHOWN_EXAMPLES else ""
            chars = list(dict.fromkeys(p for _, pieces in found for p in pieces))
            chars_text = " ".join(repr(c) for c in chars[:10]) + (" ..." if len(chars) > 10 else "")
            logger.warning(f"{tsv}: {len(found)} of {self.n_samples} {what} hold characters "
                           f"{self._vocabulary(side)} maps to <unk> ({chars_text}): {examples}{more}; "
                           f"they reach the MT as <unk>")

    def _vocabulary(self, side: str) -> str:
        name = "source" if side == "src" else "target"
        bpe = (self.cfg.src_bpe_tokenizer if side == "src" else self.cfg.bpe_tokenizer) or {}
        vocab = self.cfg.src_vocab_filename if side == "src" else self.cfg.vocab_filename
        if bpe.get("bpe") == "sentencepiece" and bpe.get("sentencepiece_model"):
            return f"the {name} sentencepiece model {Path(bpe['sentencepiece_model']).name} with {vocab}"
        if bpe.get("bpe"):
            return f"the {name} bpe ({bpe['bpe']}) with {vocab}"
        return f"the {name} dictionary {vocab}"

    def _read_features(self, index: int) -> np.ndarray:
        path = self.audio_paths[index]
        try:
            if Path(path).suffix.lower() in AUDIO_SUFFIXES:
                from fairseq_exporter.features import features_from_audio_file

                return features_from_audio_file(path)
            return get_features_or_waveform(path)
        except Exception as err:
            raise AudioError(f"{self._where(index)}: utterance {self.ids[index]}: {path}: cannot read its "
                             f"features ({err}). Recompute them, or remove the utterance from the manifest.") from err

    def _get_source_audio(self, index) -> torch.Tensor:
        if self.cfg.use_audio_input:
            raise ValueError("the exporter task reads fbank features (use_audio_input: false in the config yaml)")
        stored = self._read_features(index)
        # Stop, not warn: a manifest whose n_frames is not the length of the stored
        # features is a data bug (batching and the length filters trust n_frames).
        if len(stored) != self.n_frames[index]:
            raise self._n_frames_error(index, len(stored))
        source = self.feature_transforms(stored) if self.feature_transforms is not None else stored
        source = torch.from_numpy(source).float()
        # NaN/Inf features would reach the ASR search, which fails deep inside fairseq's
        # SequenceGenerator ("AssertionError: 30 < 30") without naming the utterance.
        # Checked per utterance, not on the collated batch: a batch's sample["id"] are
        # indices local to each split, so with several --train-subset splits the batch
        # cannot say which split's utterance is at fault; the work is the same.
        if not torch.isfinite(source).all():
            raise self._non_finite_error(index, stored)
        return source

    def _n_frames_error(self, index: int, n_stored: int) -> AudioError:
        path = self.audio_paths[index]
        computed = Path(path).suffix.lower() in AUDIO_SUFFIXES
        what = "the fbank80 features of this audio file have" if computed else "the stored features have"
        return AudioError(f"{self._where(index)}: utterance {self.ids[index]}: {path}: n_frames is "
                          f"{self.n_frames[index]} but {what} {n_stored} frames. Batching and the length "
                          f"filters use n_frames: write {n_stored} in the manifest, or recompute the features.")

    def _non_finite_error(self, index: int, stored: np.ndarray) -> AudioError:
        # Stop, not skip: NaN/Inf in stored features is a corrupted or wrongly computed
        # feature file, a data bug the user must fix; skipping would train and score on a
        # silently smaller set, and only the utterances read so far would be known.
        nan, inf = int(np.isnan(stored).sum()), int(np.isinf(stored).sum())
        if nan or inf:
            frames = np.nonzero(~np.isfinite(stored.reshape(len(stored), -1)).all(axis=1))[0]
            why = (f"the stored features hold {nan} NaN and {inf} Inf value(s), in {len(frames)} of "
                   f"{len(stored)} frames (the first at index {frames[0]})")
        else:
            transforms = ", ".join(type(t).__name__ for t in getattr(self.feature_transforms, "transforms", []))
            why = ("the stored features are finite but NaN/Inf after the data config's feature "
                   f"transforms ({transforms}; a global_cmvn stddev of 0?)")
        return AudioError(f"{self._where(index)}: utterance {self.ids[index]}: {self.audio_paths[index]}: {why}. "
                          "Recompute this utterance's features, or remove it from the manifest.")


def _length_and_unk_pieces(tokenized: str, dictionary) -> Tuple[int, List[str]]:
    """How many tokens a translation is, and its pieces that are <unk>: as fairseq counts
    them (whitespace-separated symbols), or as a dictionary that splits raw text itself (a
    tokenizer's: data/lm_vocabulary.py) says."""
    own = getattr(dictionary, "length_and_unk_pieces", None)
    if own is not None:
        return own(tokenized)
    return len(tokenized.split(" ")), _unk_pieces(tokenized, dictionary)


def _unk_pieces(tokenized: str, dictionary) -> List[str]:
    """The symbols of an encoded text that ``dictionary`` maps to <unk>, as
    ``Dictionary.encode_line`` splits it (on whitespace); a sentencepiece word-start mark
    is dropped from what is shown, so an unknown character shows as itself."""
    unk = dictionary.unk_index
    return [t.lstrip("\u2581") or t for t in tokenized.split() if dictionary.index(t) == unk]


class ExporterDatasetCreator(SpeechToTextJointDatasetCreator):
    limits: Optional[SpeechLimits] = None  # set by ``with_limits``
    audio_root: str = ""

    @classmethod
    def with_limits(cls, limits: Optional[SpeechLimits], audio_root: str):
        """This creator, bound to the model's limits and the config's audio root
        (fairseq's creators are classmethod-only, so the binding is a subclass)."""
        return type(cls.__name__, (cls,), {"limits": limits, "audio_root": audio_root})

    @classmethod
    def _from_tsv(cls, root, cfg, split, tgt_dict, src_dict, is_train_split, pre_tokenizer, bpe_tokenizer,
                  src_pre_tokenizer, src_bpe_tokenizer, append_eos=True, use_src_lang_id=0):
        samples, lines = cls._load_samples_and_lines(root, split)
        dataset = cls._from_list(split, is_train_split, samples, cfg, tgt_dict, src_dict, pre_tokenizer,
                                 bpe_tokenizer, src_pre_tokenizer, src_bpe_tokenizer, append_eos,
                                 use_src_lang_id)
        dataset.manifest = Path(root) / f"{split}.tsv"
        dataset.lines = lines
        dataset.warn_about_unk()
        return dataset

    @classmethod
    def _load_samples_from_tsv(cls, root: str, split: str) -> List[Dict]:
        return cls._load_samples_and_lines(root, split)[0]

    @classmethod
    def _load_samples_and_lines(cls, root: str, split: str) -> Tuple[List[Dict], List[int]]:
        """The rows the model can take and their manifest line numbers."""
        samples, lines = cls._read_manifest(root, split)
        tsv_path = Path(root) / f"{split}.tsv"
        cls._check_audio(samples, tsv_path)
        return cls._skip_untakeable(samples, lines, tsv_path)

    @classmethod
    def _check_audio(cls, samples, tsv_path):
        zip_sizes: Dict[str, int] = {}
        bad = []
        for s in samples:
            problem = _audio_problem(Path(cls.audio_root), s[cls.KEY_AUDIO], zip_sizes)
            if problem is not None:
                bad.append(f"utterance {s[cls.KEY_ID]}: {(Path(cls.audio_root) / s[cls.KEY_AUDIO]).as_posix()}: {problem}")
        if bad:
            shown = "\n  ".join(bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
            raise AudioError(f"manifest {tsv_path}: {len(bad)} of {len(samples)} utterance(s) have "
                             f"unreadable audio:\n  {shown}")

    @classmethod
    def _skip_untakeable(cls, samples, lines, tsv_path):
        """(rows, lines) without the utterances the model cannot take, left out with a
        count in the log: an empty transcript or translation (as prep_mustc drops empty
        sentences), and, once the model is built, speech or translations outside its limits."""
        lim = cls.limits
        min_frames = lim.min_frames if lim is not None else 1
        empty, short, long, long_tgt, kept, kept_lines = [], [], [], [], [], []
        for s, line in zip(samples, lines):
            n = int(s[cls.KEY_N_FRAMES])
            utt = f"{s[cls.KEY_ID]} (line {line})"
            if not s[cls.KEY_SRC_TEXT].strip() or not s[cls.KEY_TGT_TEXT].strip():
                empty.append(utt)
            elif n < min_frames:
                short.append(utt)
            elif lim is not None and n > lim.max_frames:
                long.append(utt)
            elif lim is not None and len(s[cls.KEY_TGT_TEXT].split()) + 1 > lim.max_target_tokens:
                # word count: a lower bound of the token count, cheap before tokenization;
                # fairseq's own size filter still catches the rest
                long_tgt.append(utt)
            else:
                kept.append(s)
                kept_lines.append(line)
        dropped = len(samples) - len(kept)
        if dropped:
            parts = []
            reasons = [(empty, "with an empty src_text or tgt_text"),
                       (short, f"shorter than {min_frames} frame(s), nothing left after the ASR's "
                               "convolutional subsampling")]
            if lim is not None:
                reasons += [(long, f"longer than {lim.max_frames} frames (--max-source-positions)"),
                            (long_tgt, f"translation longer than the MT decoder's {lim.max_target_tokens} positions")]
            for ids, why in reasons:
                if ids:
                    parts.append(f"{len(ids)} {why} (e.g. {', '.join(ids[:3])})")
            logger.warning(f"{tsv_path}: skipped {dropped} of {len(samples)} utterances: {'; '.join(parts)}")
        if not kept:
            raise ManifestError(f"manifest {tsv_path}: no utterance left after skipping {dropped} "
                                "that the model cannot take (see the warning above)")
        return kept, kept_lines

    @classmethod
    def _read_manifest(cls, root: str, split: str) -> Tuple[List[Dict], List[int]]:
        """The rows of ``{root}/{split}.tsv`` and their line numbers. Everything fairseq
        would misread stops here with the file, line and column: a field count other than
        the header's, an n_frames that is not a whole number, an empty or repeated id
        (ids key the 1-best cache and the outputs)."""
        tsv_path = Path(root) / f"{split}.tsv"
        if not tsv_path.is_file():
            raise FileNotFoundError(f"manifest not found: {tsv_path}")
        header, lines = s2t_layout.read_manifest_lines(tsv_path)
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ManifestError(
                f"manifest {tsv_path} lacks column(s) {', '.join(missing)}"
                f"{''.join(_column_hint(c, header) for c in missing)} "
                f"(header: {' '.join(header)}); the exporter task needs "
                f"{' '.join(REQUIRED_COLUMNS)} (join ASR and ST manifests with fairseq-exporter-join-manifests)")
        if not lines:
            raise ManifestError(f"manifest {tsv_path} has no rows")
        col = {c: header.index(c) for c in REQUIRED_COLUMNS}
        problems, advice, first_line_of = [], "", {}
        for line, fields in lines:
            problem = s2t_layout.field_count_problem(header, line, fields)
            if problem is not None:
                problems.append(problem)
                advice = s2t_layout.FIELD_COUNT_ADVICE
                continue
            utt_id, n_frames = fields[col[cls.KEY_ID]], fields[col[cls.KEY_N_FRAMES]]
            where = f"line {line} (utterance {utt_id})"
            if not utt_id:
                problems.append(f"line {line}, column {col[cls.KEY_ID] + 1} ({cls.KEY_ID}): empty")
            elif utt_id in first_line_of:
                problems.append(f"line {line}, column {col[cls.KEY_ID] + 1} ({cls.KEY_ID}): "
                                f"utterance id {utt_id} is already the id of line {first_line_of[utt_id]}")
            else:
                first_line_of[utt_id] = line
            if not re.fullmatch(r"[0-9]+", n_frames):
                problems.append(f"{where}, column {col[cls.KEY_N_FRAMES] + 1} ({cls.KEY_N_FRAMES}): "
                                f"{n_frames!r} is not a number of frames (a whole number >= 0)")
        if problems:
            raise s2t_layout.manifest_problems(tsv_path, len(lines), problems, advice)
        return [dict(zip(header, fields)) for _, fields in lines], [line for line, _ in lines]

    @classmethod
    def _from_list(cls, split_name, is_train_split, samples, cfg, tgt_dict, src_dict,
                   pre_tokenizer, bpe_tokenizer, src_pre_tokenizer, src_bpe_tokenizer,
                   append_eos, use_src_lang_id) -> ExporterDataset:
        audio_root = Path(cfg.audio_root)
        return ExporterDataset(
            split_name, is_train_split, cfg,
            audio_paths=[(audio_root / s[cls.KEY_AUDIO]).as_posix() for s in samples],
            n_frames=[int(s[cls.KEY_N_FRAMES]) for s in samples],
            src_texts=[s[cls.KEY_SRC_TEXT] for s in samples],
            tgt_texts=[s[cls.KEY_TGT_TEXT] for s in samples],
            speakers=[s.get(cls.KEY_SPEAKER, cls.DEFAULT_SPEAKER) for s in samples],
            src_langs=[s.get(cls.KEY_SRC_LANG, cls.DEFAULT_LANG) for s in samples],
            tgt_langs=[s.get(cls.KEY_TGT_LANG, cls.DEFAULT_LANG) for s in samples],
            ids=[s[cls.KEY_ID] for s in samples],
            tgt_dict=tgt_dict, src_dict=src_dict,
            pre_tokenizer=pre_tokenizer, bpe_tokenizer=bpe_tokenizer,
            src_pre_tokenizer=src_pre_tokenizer, src_bpe_tokenizer=src_bpe_tokenizer,
            append_eos=append_eos, use_src_lang_id=use_src_lang_id,
        )
