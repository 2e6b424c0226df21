"""(speech, transcript, translation) data for the exporter task.

fairseq's ``SpeechToTextJointDataset`` already yields speech features, the source
transcript in the source vocabulary (``src_txt_tokens``) and the translation, from the
stock S2T manifests; we add what its users trip over: manifests checked column by
column, audio files turned into fbank without torchaudio, and errors that name the
utterance and file at fault.
"""

import csv
import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

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

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "audio", "n_frames", "src_text", "tgt_text")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class ManifestError(ValueError):
    pass


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


class ExporterDataset(SpeechToTextJointDataset):
    def _read_features(self, index: int) -> np.ndarray:
        path = self.audio_paths[index]
        try:
            if Path(path).suffix.lower() in AUDIO_SUFFIXES:
                from fairseq_exporter.features import features_from_audio_file

                return features_from_audio_file(path)
            return get_features_or_waveform(path)
        except Exception as err:
            raise AudioError(f"utterance {self.ids[index]}: cannot read features from {path}: {err}") from err

    def _get_source_audio(self, index) -> torch.Tensor:
        if self.cfg.use_audio_input:
            raise ValueError("the exporter task reads fbank features (use_audio_input: false in the config yaml)")
        source = self._read_features(index)
        if self.feature_transforms is not None:
            source = self.feature_transforms(source)
        return torch.from_numpy(source).float()


class ExporterDatasetCreator(SpeechToTextJointDatasetCreator):
    limits: Optional[SpeechLimits] = None  # set by ``with_limits``
    audio_root: str = ""

    @classmethod
    def with_limits(cls, limits: Optional[SpeechLimits], audio_root: str):
        """This creator, bound to the model's limits and the config's audio root
        (fairseq's creators are classmethod-only, so the binding is a subclass)."""
        return type(cls.__name__, (cls,), {"limits": limits, "audio_root": audio_root})

    @classmethod
    def _load_samples_from_tsv(cls, root: str, split: str) -> List[Dict]:
        samples = cls._read_manifest(root, split)
        tsv_path = Path(root) / f"{split}.tsv"
        cls._check_audio(samples, tsv_path)
        if cls.limits is not None:
            samples = cls._drop_out_of_limits(samples, tsv_path)
        return samples

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
    def _drop_out_of_limits(cls, samples, tsv_path):
        lim = cls.limits
        short, long, long_tgt, kept = [], [], [], []
        for s in samples:
            n = int(s[cls.KEY_N_FRAMES])
            if n < lim.min_frames:
                short.append(s[cls.KEY_ID])
            elif n > lim.max_frames:
                long.append(s[cls.KEY_ID])
            elif len(s[cls.KEY_TGT_TEXT].split()) + 1 > lim.max_target_tokens:
                # word count: a lower bound of the token count, cheap before tokenization;
                # fairseq's own size filter still catches the rest
                long_tgt.append(s[cls.KEY_ID])
            else:
                kept.append(s)
        dropped = len(samples) - len(kept)
        if dropped:
            parts = []
            for ids, why in ((short, f"shorter than {lim.min_frames} frame(s), nothing left after the ASR's "
                                     "convolutional subsampling"),
                             (long, f"longer than {lim.max_frames} frames (--max-source-positions)"),
                             (long_tgt, f"translation longer than the MT decoder's {lim.max_target_tokens} positions")):
                if ids:
                    parts.append(f"{len(ids)} {why} (e.g. {', '.join(ids[:3])})")
            logger.warning(f"{tsv_path}: skipped {dropped} of {len(samples)} utterances: {'; '.join(parts)}")
        if not kept:
            raise ManifestError(f"manifest {tsv_path}: no utterance left after skipping {dropped} "
                                "that the model cannot take (see the warning above)")
        return kept

    @classmethod
    def _read_manifest(cls, root: str, split: str) -> List[Dict]:
        tsv_path = Path(root) / f"{split}.tsv"
        if not tsv_path.is_file():
            raise FileNotFoundError(f"manifest not found: {tsv_path}")
        with open(tsv_path, encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t", quotechar=None, doublequote=False,
                                    lineterminator="\n", quoting=csv.QUOTE_NONE)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ManifestError(
                    f"manifest {tsv_path} lacks column(s) {', '.join(missing)}"
                    f"{''.join(_column_hint(c, header) for c in missing)} "
                    f"(header: {' '.join(reader.fieldnames or [])}); the exporter task needs "
                    f"{' '.join(REQUIRED_COLUMNS)} (join ASR and ST manifests with fairseq-exporter-join-manifests)")
            samples = [dict(row) for row in reader]
        if not samples:
            raise ManifestError(f"manifest {tsv_path} has no rows")
        for line, row in enumerate(samples, start=2):
            if any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise ManifestError(f"manifest {tsv_path} line {line}: fewer fields than the header")
        return samples

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
