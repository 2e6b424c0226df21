"""Generate the toy speech-translation corpus.

    python -m fairseq_exporter.toy.make_corpus --out DIR --seed 1 [--scale quick|full]

Laid out as fairseq's `examples/speech_to_text/prep_mustc_data.py` lays out MuST-C, so what runs
downstream is what a MuST-C user runs:

    DIR/st/fbank80.zip               uncompressed zip of {id}.npy (frames, 80) log-mel fbank
    DIR/st/{train,dev,test}.tsv      ST manifests: id audio n_frames src_text tgt_text speaker
    DIR/st/{train,dev,test}_asr.tsv  ASR manifests (MuST-C prep columns), tgt_text = English
    DIR/st/config_st.yaml, config_asr.yaml
    DIR/st/dict.lm.txt, config_asr_lm.yaml, config_st_lm.yaml
                                     with --lm-configs LM_DIR (stage 9): the ASR and the exporter
                                     task on the LM tokenizer's pieces
    DIR/st/spm_{en,de}.model/.vocab, dict.{en,de}.txt
    DIR/text/general.{train,valid}.{en,de}    sentencepiece-encoded MT text, general domain
    DIR/text/task.{train,valid,test}.{en,de}  task domain: train = ST train + text-only pairs,
                                              valid/test = the ST dev/test sentences
    DIR/corpus.json                  arguments, sizes, ambiguous words, speakers, durations

Manifests name audio as `fbank80.zip:OFFSET:LENGTH`, relative to the `audio_root` the configs
set. The speech is the English side spoken by libespeak-ng with several voices, rates and pitches,
then made harder (reverberation, band limiting, white / pink / brown / babble noise at 10-35 dB
SNR) so that a small ASR model makes real errors.
"""

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from fairseq_exporter.data import s2t_layout
from fairseq_exporter.features import SAMPLE_RATE, fbank80, resample
from fairseq_exporter.toy import grammar
from fairseq_exporter.toy.espeak import EspeakSynthesizer
from fairseq_exporter.toy.fresh_processes import map_in_fresh_processes

SCALES = {
    # ST utterances per split; general MT pairs; task text-only pairs added to task.train.
    "quick": dict(train=60, dev=20, test=20, general_train=500, general_valid=50, task_text=100),
    "full": dict(train=4500, dev=300, test=400, general_train=40000, general_valid=1000,
                 task_text=3500),
}
SPLITS = ("train", "dev", "test")
# Requested sizes. English is the MT source and the ASR target: subword pieces (not the ~490
# whole words a 500 vocabulary gives) let the minutes-long ASR training share what it learns
# across words (calibration: dev token accuracy after 700 updates 60% with 4-10-word sentences
# and 500 pieces, 75% with 4-8 words and 200 pieces).
# German stops near 720 pieces for ~1800 word types.
SPM_VOCAB = {"en": 200, "de": 800}
# No SpecAugment (MuST-C's configs have it): it pays off over long trainings, and the toy ASR
# trains for minutes; the speech itself is varied (speakers, rates, noise, rooms).

VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland")
VARIANTS = ("", "+m1", "+m3", "+f1", "+f2", "+f4")
N_SPEAKERS = 12
RATE_WPM = (150, 200)
P_REVERB, RT60_S, DRR_DB = 0.15, (0.15, 0.4), (5.0, 15.0)
P_LOWPASS, LOWPASS_HZ = 0.1, (3000.0, 5000.0)
SILENCE_S = (0.05, 0.4)
PEAK = (0.05, 0.9)
# Noise kind: (probability, SNR range in dB). Babble is other espeak talkers, close to the
# target voice, so it is kept weaker.
NOISES = {"white": (0.2, (15.0, 35.0)), "pink": (0.2, (10.0, 30.0)), "brown": (0.2, (10.0, 30.0)),
          "babble": (0.4, (18.0, 30.0))}
COLOR_EXPONENTS = {"white": 0.0, "pink": 0.5, "brown": 1.0}
N_BABBLE_SOURCES, BABBLE_TALKERS = 16, (3, 6)
BLOCK = 100  # utterances per worker process


@dataclass(frozen=True)
class Speaker:
    voice: str  # espeak voice + variant
    rate: int  # words per minute
    pitch: int
    pitch_range: int

    @property
    def name(self) -> str:
        return f"{self.voice}/r{self.rate}/p{self.pitch}/pr{self.pitch_range}"


def speaker_pool(seed: int):
    rng = np.random.default_rng([seed, 1])
    return [Speaker(VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))],
                    int(rng.integers(*RATE_WPM)), int(rng.integers(25, 76)),
                    int(rng.integers(20, 91))) for _ in range(N_SPEAKERS)]


def speak(tts: EspeakSynthesizer, text: str, speaker: Speaker, rate_factor: float = 1.0,
          noise_seed: int = 0):
    """Clean 16 kHz float speech of `text`."""
    # The full stop gives the sentence-final fall in pitch.
    wav = tts.synth(text + ".", speaker.voice, int(speaker.rate * rate_factor), speaker.pitch,
                    speaker.pitch_range, noise_seed)
    return resample(wav.astype(np.float32) / 32768, tts.sample_rate, SAMPLE_RATE)


def babble_sources(seed: int, speakers):
    """Sentences by random speakers that babble noise is mixed from."""
    tts, rng = EspeakSynthesizer(), np.random.default_rng([seed, 2])
    sentences = grammar.generate("general", N_BABBLE_SOURCES, seed + 10_000)
    return [speak(tts, en, speakers[rng.integers(len(speakers))], noise_seed=i)
            for i, (en, _) in enumerate(sentences)]


class Acoustics:
    """Spoken and degraded versions of sentences; noise, reverberation, band limit, rate and
    gain are drawn from (seed, index), so an utterance does not depend on the others."""

    def __init__(self, seed: int, babble):
        self.seed, self.babble = seed, babble
        self.tts = EspeakSynthesizer()

    def utterance(self, index: int, text: str, speaker: Speaker) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3, index])
        noise_seed = int(np.random.default_rng([self.seed, 5, index]).integers(2 ** 31))
        wav = speak(self.tts, text, speaker, rng.uniform(0.9, 1.15), noise_seed)
        wav = np.pad(wav, [int(rng.uniform(*SILENCE_S) * SAMPLE_RATE) for _ in range(2)])
        if rng.random() < P_REVERB:
            wav = reverberate(wav, rng)
        if rng.random() < P_LOWPASS:
            wav = lowpass(wav, rng.uniform(*LOWPASS_HZ))
        kind = rng.choice(list(NOISES), p=[p for p, _ in NOISES.values()])
        noise = self.babble_noise(len(wav), rng) if kind == "babble" else colored_noise(
            len(wav), COLOR_EXPONENTS[kind], rng)
        snr_db = rng.uniform(*NOISES[kind][1])
        noise *= np.sqrt(np.mean(wav ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
        wav = wav + noise
        return (wav * (rng.uniform(*PEAK) / np.abs(wav).max())).astype(np.float32)

    def babble_noise(self, n: int, rng) -> np.ndarray:
        """Several talkers at once, each a random stretch of a looped babble source."""
        out = np.zeros(n, dtype=np.float32)
        for _ in range(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)):
            source = self.babble[rng.integers(len(self.babble))]
            start = rng.integers(len(source))
            out += np.resize(np.roll(source, -start), n)
        return out


def _fft_size(n: int) -> int:
    return 1 << (n - 1).bit_length()  # numpy's FFT is slow on lengths with large prime factors


def colored_noise(n: int, exponent: float, rng) -> np.ndarray:
    """Noise with power spectrum 1/f^(2*exponent): white 0, pink 0.5, brown 1."""
    size = _fft_size(n)
    spectrum = rng.standard_normal(size // 2 + 1) + 1j * rng.standard_normal(size // 2 + 1)
    spectrum[0] = 0.0
    f = np.arange(size // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / f ** exponent, size)[:n].astype(np.float32)


def reverberate(wav: np.ndarray, rng) -> np.ndarray:
    """Convolution with a synthetic room: the direct path plus an exponentially decaying noise
    tail, `DRR_DB` weaker in total energy."""
    rt60 = rng.uniform(*RT60_S)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir *= np.sqrt(10 ** (-rng.uniform(*DRR_DB) / 10) / np.sum(ir[1:] ** 2))
    ir[0] = 1.0
    n = len(wav) + len(ir) - 1
    size = _fft_size(n)
    out = np.fft.irfft(np.fft.rfft(wav, size) * np.fft.rfft(ir, size), size)[:n]
    return out.astype(np.float32)


def lowpass(wav: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Band limiting like a cheap microphone or phone line (8th-order Butterworth magnitude)."""
    size = _fft_size(len(wav))
    f = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    gain = 1 / np.sqrt(1 + (f / cutoff_hz) ** 16)
    return np.fft.irfft(np.fft.rfft(wav, size) * gain, size)[:len(wav)].astype(np.float32)


def _render_block(block):
    """Utterances -> [(id, .npy bytes, n_frames, seconds of audio)], in a fresh process."""
    seed, babble, jobs = block
    acoustics = Acoustics(seed, babble)
    rendered = []
    for index, utt_id, text, speaker in jobs:
        wav = acoustics.utterance(index, text, speaker)
        features = fbank80(wav)
        rendered.append((utt_id, s2t_layout.npy_bytes(features), features.shape[0], len(wav) / SAMPLE_RATE))
    return rendered


def write_features(zip_path: Path, jobs, seed: int, speakers, workers: int):
    """Render every job into an uncompressed zip of {id}.npy (fairseq's create_zip layout).
    Returns {id: (n_frames, seconds)}. Each block of utterances (and the babble) is spoken
    by a process forked for it alone (see fresh_processes.py)."""
    babble = next(map_in_fresh_processes(_babble, [(seed, speakers)], 1, name=lambda _: "babble noise"))
    blocks = [(seed, babble, jobs[i:i + BLOCK]) for i in range(0, len(jobs), BLOCK)]
    stats, done, started = {}, 0, time.time()
    rendered_blocks = map_in_fresh_processes(_render_block, blocks, workers,
                                             name=lambda i: f"utterances {i * BLOCK}..{min((i + 1) * BLOCK, len(jobs)) - 1}")
    with s2t_layout.FeatureZipWriter(zip_path) as writer:
        for rendered in rendered_blocks:
            for utt_id, data, n_frames, seconds in rendered:
                writer.add(utt_id, data)
                stats[utt_id] = (n_frames, seconds)
            done += len(rendered)
            if done % 500 < BLOCK or done == len(jobs):
                print(f"| audio {done}/{len(jobs)} ({time.time() - started:.1f} s)", flush=True)
    return stats


def _babble(job):
    return babble_sources(*job)


def train_sentencepiece(lines, prefix: Path, vocab_size: int, whole_words=()):
    """A unigram model (s2t_layout's fairseq settings) and the fairseq dictionary from it;
    ``whole_words`` are kept single pieces at the start of a word (plurals add a piece)."""
    text = prefix.with_suffix(".train.txt")
    s2t_layout.write_text_lines(text, lines)
    try:
        model_path = s2t_layout.train_sentencepiece([text], prefix, vocab_size,
                                                    user_defined_symbols=["\u2581" + w for w in whole_words])
    finally:
        text.unlink()
    s2t_layout.write_dictionary_from_sentencepiece(model_path, prefix.parent / f"dict.{prefix.name[len('spm_'):]}.txt")
    return spm.SentencePieceProcessor(model_file=str(model_path))


# the feature settings of every config (80 fbank, per-utterance mean-variance normalisation)
FEATURES = {"input_channels": 1, "input_feat_per_channel": 80, "transforms": {"*": ["utterance_cmvn"]}}


def write_configs(st_dir: Path):
    """config_st.yaml (the exporter task: both sides) and config_asr.yaml (the ASR)."""
    st_dir = st_dir.resolve()

    def bpe(lang):
        return s2t_layout.bpe_tokenizer_spec(str(st_dir / f"spm_{lang}.model"))

    s2t_layout.write_data_config(st_dir / "config_st.yaml", vocab_filename="dict.de.txt", bpe_tokenizer=bpe("de"),
                                 src_vocab_filename="dict.en.txt", src_bpe_tokenizer=bpe("en"),
                                 features=FEATURES, audio_root=str(st_dir))
    s2t_layout.write_data_config(st_dir / "config_asr.yaml", vocab_filename="dict.en.txt", bpe_tokenizer=bpe("en"),
                                 features=FEATURES, audio_root=str(st_dir))


def write_lm_configs(st_dir: Path, lm_dir: Path):
    """dict.lm.txt (the LM tokenizer's pieces, data/lm_pieces.py), config_asr_lm.yaml (an ASR
    writing them) and config_st_lm.yaml (the exporter task reading such an ASR's transcripts):
    the configs of write_configs with the English side in the LM's pieces."""
    from fairseq_exporter.data.lm_pieces import write_vocabulary

    st_dir, lm_dir = st_dir.resolve(), lm_dir.resolve()
    if not (st_dir / "config_st.yaml").is_file():
        raise SystemExit(f"{st_dir}: no corpus here (make it first: --out {st_dir.parent})")
    write_vocabulary(str(lm_dir), st_dir / "dict.lm.txt", "--lm-configs")
    pieces = {"bpe": "hf_tokenizer", "hf_tokenizer": str(lm_dir)}
    s2t_layout.write_data_config(st_dir / "config_st_lm.yaml", vocab_filename="dict.de.txt",
                                 bpe_tokenizer=s2t_layout.bpe_tokenizer_spec(str(st_dir / "spm_de.model")),
                                 src_vocab_filename="dict.lm.txt", src_bpe_tokenizer=pieces,
                                 features=FEATURES, audio_root=str(st_dir))
    s2t_layout.write_data_config(st_dir / "config_asr_lm.yaml", vocab_filename="dict.lm.txt", bpe_tokenizer=pieces,
                                 features=FEATURES, audio_root=str(st_dir))


def generate_text(seed: int, sizes):
    """{split or text set: [(en, de)]}. One grammar call per domain keeps the task splits
    disjoint; general text leaves out every task sentence."""
    n_speech = sum(sizes[s] for s in SPLITS)
    task = grammar.generate("task", n_speech + sizes["task_text"], seed)
    general = grammar.generate("general", sizes["general_train"] + sizes["general_valid"], seed,
                               exclude={en for en, _ in task})
    if len(task) < n_speech + sizes["task_text"] or len(general) < sizes["general_train"]:
        raise SystemExit(f"the grammar gave only {len(task)} task, {len(general)} general pairs")
    bounds = np.cumsum([0] + [sizes[s] for s in SPLITS])
    texts = {s: task[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}
    texts["task_text"] = task[n_speech:]
    texts["general_train"] = general[:sizes["general_train"]]
    texts["general_valid"] = general[sizes["general_train"]:]
    return texts


def write_vocabularies_and_text(st_dir: Path, text_dir: Path, texts):
    """spm_{en,de} and dict.{en,de}.txt from the training text of both domains (the MT source
    vocabulary is also the ASR target vocabulary), then the encoded MT text."""
    task_train = texts["train"] + texts["task_text"]
    models = {}
    for k, lang in enumerate(("en", "de")):
        models[lang] = train_sentencepiece(
            [pair[k] for pair in texts["general_train"] + task_train], st_dir / f"spm_{lang}",
            SPM_VOCAB[lang], whole_words=grammar.steering_words() if lang == "en" else ())
    text_sets = {"general.train": texts["general_train"], "general.valid": texts["general_valid"],
                 "task.train": task_train, "task.valid": texts["dev"], "task.test": texts["test"]}
    for name, pairs in text_sets.items():
        for k, lang in enumerate(("en", "de")):
            s2t_layout.write_text_lines(text_dir / f"{name}.{lang}",
                                        [" ".join(models[lang].encode(pair[k], out_type=str)) for pair in pairs])
    return models


def write_speech(st_dir: Path, texts, seed: int, workers: int):
    """fbank80.zip and the ST and ASR manifests; returns the speakers and seconds per split."""
    speakers = speaker_pool(seed)
    rng = np.random.default_rng([seed, 4])
    jobs, rows = [], {split: [] for split in SPLITS}
    for split in SPLITS:
        for i, (en, de) in enumerate(texts[split]):
            utt_id, speaker = f"toy_{split}_{i:05d}", speakers[rng.integers(len(speakers))]
            jobs.append((len(jobs), utt_id, en, speaker))
            rows[split].append((utt_id, en, de, speaker.name))
    zip_path = st_dir / "fbank80.zip"
    stats = write_features(zip_path, jobs, seed, speakers, workers)
    audio = {u: entry.audio for u, entry in s2t_layout.zip_entries(zip_path).items()}
    seconds = {}
    for split in SPLITS:
        s2t_layout.write_manifest(st_dir / f"{split}.tsv",
                                  [(u, audio[u], stats[u][0], en, de, spk) for u, en, de, spk in rows[split]],
                                  s2t_layout.JOINT_COLUMNS)
        s2t_layout.write_manifest(st_dir / f"{split}_asr.tsv",
                                  [(u, audio[u], stats[u][0], en, spk) for u, en, _, spk in rows[split]],
                                  s2t_layout.SINGLE_TARGET_COLUMNS)
        seconds[split] = sum(stats[u][1] for u, *_ in rows[split])
    return speakers, seconds


def make_corpus(out: Path, seed: int, scale: str, workers: int):
    arguments = {"seed": seed, "scale": scale}
    marker = out / "corpus.json"
    if marker.exists():
        previous = json.loads(marker.read_text())["arguments"]
        if previous == arguments:
            print(f"| {marker} exists for {arguments}: nothing to do")
            return
        raise SystemExit(f"{out} holds a corpus made with {previous}, not {arguments}: "
                         f"remove it or choose another --out")
    started = time.time()
    st_dir, text_dir = out / "st", out / "text"
    st_dir.mkdir(parents=True, exist_ok=True)
    text_dir.mkdir(parents=True, exist_ok=True)

    texts = generate_text(seed, SCALES[scale])
    print(f"| text ({time.time() - started:.1f} s)", flush=True)
    models = write_vocabularies_and_text(st_dir, text_dir, texts)
    write_configs(st_dir)
    print(f"| sentencepiece, MT text, configs ({time.time() - started:.1f} s)", flush=True)
    speakers, seconds = write_speech(st_dir, texts, seed, workers)

    sizes = {name: len(pairs) for name, pairs in texts.items()}
    summary = {
        "arguments": arguments,
        "sizes": {**{f"st_{s}": sizes[s] for s in SPLITS},
                  "general_train": sizes["general_train"], "general_valid": sizes["general_valid"],
                  "task_train": sizes["train"] + sizes["task_text"]},
        "hours": {s: round(seconds[s] / 3600, 3) for s in SPLITS},
        "mean_seconds": {s: round(seconds[s] / max(1, sizes[s]), 2) for s in SPLITS},
        "vocab": {lang: model.get_piece_size() for lang, model in models.items()},
        "ambiguous": [{"en": a.en, "general": a.general[0], "task": a.task[0], "cue": a.cue[0]}
                      for a in grammar.AMBIGUOUS],
        "speakers": [{"name": s.name, **asdict(s)} for s in speakers],
        "acoustics": {"noise_probability_snr_db": NOISES, "p_reverb": P_REVERB,
                      "rt60_s": RT60_S, "drr_db": DRR_DB, "p_lowpass": P_LOWPASS,
                      "lowpass_hz": LOWPASS_HZ, "rate_wpm": RATE_WPM},
        "generation_seconds": round(time.time() - started, 1),
    }
    marker.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"| wrote {out} in {summary['generation_seconds']} s: {summary['sizes']}, "
          f"hours {summary['hours']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes synthesizing speech (the output does not depend on it)")
    parser.add_argument("--lm-configs", type=Path, metavar="LM_DIR",
                        help="only write OUT/st's configs for an ASR on this LM's pieces (the corpus made before)")
    args = parser.parse_args(argv)
    if args.lm_configs:
        write_lm_configs(args.out / "st", args.lm_configs)
    else:
        make_corpus(args.out, args.seed, args.scale, args.workers)


if __name__ == "__main__":
    sys.exit(main())
