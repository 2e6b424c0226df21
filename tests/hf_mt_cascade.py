"""A tiny speech corpus and an ASR trained with fairseq-train on a Hugging Face MT tokenizer's
source pieces (fairseq-exporter-mt-vocab's dictionary and data configs, the hf_tokenizer bpe):
the encoder-decoder back-end as a user meets it, in seconds. The MT is one of tests/tiny_hf_mt.py's."""

from pathlib import Path

import tiny_cascade
from tiny_cascade import run

FEATURES = "input_channels: 1\ninput_feat_per_channel: 80\n"


def build(root: Path, mt_dir: Path, asr_updates=20) -> dict:
    from fairseq_exporter.cli import mt_vocab

    root.mkdir(parents=True, exist_ok=True)
    plain = {"train": tiny_cascade.sentences(200, 1), "dev": tiny_cascade.sentences(20, 2),
             "test": tiny_cascade.sentences(12, 3)}
    s2t = root / "s2t"
    rows = tiny_cascade.write_features(s2t, plain)
    for split, split_rows in rows.items():
        tiny_cascade.write_manifest(s2t / f"{split}.tsv", split_rows)
        tiny_cascade.write_manifest(s2t / f"{split}_asr.tsv", split_rows, target="src")
    (s2t / "config_features.yaml").write_text(FEATURES)
    mt_vocab.main([str(mt_dir), "--out", str(s2t / "dict.mt.txt"), "--features-from", str(s2t / "config_features.yaml")])
    # the exporter task's config under the name the tests' helpers use
    (s2t / "config_st.yaml").write_text((s2t / "config_mt.yaml").read_text())
    asr_dir = root / "asr"
    run(["fairseq_cli.train", str(s2t), "--user-dir", tiny_cascade_user_dir(), "--task", "speech_to_text",
         "--config-yaml", "config_asr_mt.yaml", "--train-subset", "train_asr", "--valid-subset", "dev_asr",
         "--arch", "s2t_transformer", "--encoder-layers", "1", "--decoder-layers", "1",
         "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
         "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
         "--conv-channels", "32", "--dropout", "0.1", "--criterion", "label_smoothed_cross_entropy_with_ctc",
         "--ctc-weight", "0.3", "--max-tokens", "4000", "--max-update", str(asr_updates),
         "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
         "--no-epoch-checkpoints", "--no-progress-bar", "--seed", "1", "--num-workers", "0",
         "--save-dir", str(asr_dir)])
    return {"root": root, "s2t": s2t, "asr": asr_dir / "checkpoint_best.pt", "mt": mt_dir}


def tiny_cascade_user_dir():
    return str(Path(__file__).resolve().parents[1] / "fairseq_exporter")
