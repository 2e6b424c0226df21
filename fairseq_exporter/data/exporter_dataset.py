"""(speech, transcript, translation) data for the exporter task.

fairseq's ``SpeechToTextJointDataset`` already yields speech features, the source
transcript in the source vocabulary (``src_txt_tokens``) and the translation, from the
stock S2T manifests; we add what its users trip over: manifests checked column by
column, audio files turned into fbank without torchaudio, and errors that name the
utterance and file at fault.
"""

import csv
import logging
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from fairseq.data.audio.audio_utils import get_features_or_waveform
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
    @classmethod
    def _load_samples_from_tsv(cls, root: str, split: str) -> List[Dict]:
        tsv_path = Path(root) / f"{split}.tsv"
        if not tsv_path.is_file():
            raise FileNotFoundError(f"manifest not found: {tsv_path}")
        with open(tsv_path, encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t", quotechar=None, doublequote=False,
                                    lineterminator="\n", quoting=csv.QUOTE_NONE)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(
                    f"manifest {tsv_path} lacks column(s) {', '.join(missing)} "
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
