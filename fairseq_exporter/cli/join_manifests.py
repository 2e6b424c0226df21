"""Join fairseq's ASR and ST manifests of the same speech into the exporter's manifests.

fairseq's ``examples/speech_to_text/prep_mustc_data.py`` run with ``--task asr`` and with
``--task st`` writes, per split, ``{split}_asr.tsv`` (tgt_text = the English transcript) and
``{split}_st.tsv`` (tgt_text = the translation), with the same ids and the same features.
The exporter task reads one manifest with both texts; this joins the two by id, reusing the
features as they are:

    fairseq-exporter-join-manifests --from $MUSTC_ROOT/en-de --out data/

writes ``data/{split}.tsv`` (id audio n_frames src_text tgt_text speaker) and, when --out is
another dir, ``data/{split}_asr.tsv`` (for training an ASR there). Audio paths are written
absolute, so the new dir may live anywhere. An id in only one of the two manifests (fairseq
drops empty sentences per task) is left out, counted, named, and listed in
``data/{split}.unmatched.tsv``; an id whose audio or n_frames differ between the two is an
error (the manifests come from two feature extractions).
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fairseq_exporter.data import s2t_layout

REQUIRED = ("id", "audio", "n_frames", "tgt_text")
SHOWN_IDS = 10  # ids printed per kind of unmatched row; all of them go to the file


class JoinError(ValueError):
    """Manifests that cannot be joined; the message names the file and id."""


class AudioResolver:
    """Absolute audio paths. fairseq resolves a relative audio path against the config's
    audio_root (by default the working directory); older prep_mustc_data.py versions wrote
    paths relative to MUSTC_ROOT ("en-de/fbank80.zip:..."), newer ones absolute paths. A
    relative path is looked up in each root in turn."""

    def __init__(self, roots: Sequence[Path]):
        self.roots = [r.resolve() for r in roots]
        self._files: Dict[str, Path] = {}

    def __call__(self, audio: str, manifest: Path, utt_id: str) -> str:
        file_part = s2t_layout.audio_file_of(audio)
        if file_part not in self._files:
            if Path(file_part).is_absolute():
                found = Path(file_part) if Path(file_part).exists() else None
                tried = [file_part]
            else:
                tried = [str(root / file_part) for root in self.roots]
                found = next((Path(t) for t in tried if Path(t).exists()), None)
            if found is None:
                raise JoinError(f"{manifest}: the audio of {utt_id}, {file_part}, is not at "
                                f"{' nor '.join(tried)}; pass --audio-root DIR (the dir relative "
                                "audio paths start from)")
            self._files[file_part] = found
        return str(self._files[file_part]) + audio[len(file_part):]


def _rows_by_id(path: Path) -> Dict[str, dict]:
    rows = s2t_layout.read_manifest(path, REQUIRED)
    by_id = {}
    for row in rows:
        if row["id"] in by_id:
            raise JoinError(f"{path}: id {row['id']} appears twice")
        by_id[row["id"]] = row
    return by_id


def _show(ids: List[str]) -> str:
    shown = " ".join(ids[:SHOWN_IDS])
    return shown + (f" ... (+{len(ids) - SHOWN_IDS})" if len(ids) > SHOWN_IDS else "")


def join_split(asr_path: Path, st_path: Path, out_dir: Path, split: str, resolve: AudioResolver,
               write_asr: bool) -> dict:
    """Join one split; returns counts and the unmatched ids."""
    asr, st = _rows_by_id(asr_path), _rows_by_id(st_path)
    joined, audio_of = [], {}
    for utt_id, a in asr.items():
        s = st.get(utt_id)
        if s is None:
            continue
        if a["audio"] != s["audio"] or a["n_frames"] != s["n_frames"]:
            raise JoinError(
                f"id {utt_id}: audio {a['audio']} with {a['n_frames']} frames in {asr_path}, but "
                f"{s['audio']} with {s['n_frames']} frames in {st_path}. The two manifests point at "
                "different features (was fbank80.zip rewritten by a later prep_mustc_data.py run?): "
                "rerun prep_mustc_data.py for both --task asr and --task st")
        audio_of[utt_id] = resolve(a["audio"], asr_path, utt_id)
        joined.append((utt_id, audio_of[utt_id], a["n_frames"], a["tgt_text"], s["tgt_text"],
                       a.get("speaker", s.get("speaker", "spk"))))
    if not joined:
        raise JoinError(f"{asr_path} and {st_path} share no id: are they manifests of the same split?")
    only_asr = [i for i in asr if i not in st]
    only_st = [i for i in st if i not in asr]
    s2t_layout.write_manifest(out_dir / f"{split}.tsv", joined, s2t_layout.JOINT_COLUMNS)
    if write_asr:
        s2t_layout.write_manifest(
            out_dir / f"{split}_asr.tsv",
            [(i, audio_of.get(i) or resolve(a["audio"], asr_path, i), a["n_frames"], a["tgt_text"],
              a.get("speaker", "spk")) for i, a in asr.items()],
            s2t_layout.SINGLE_TARGET_COLUMNS)
    unmatched = out_dir / f"{split}.unmatched.tsv"
    if only_asr or only_st:
        s2t_layout.write_manifest(unmatched, [(i, asr_path) for i in only_asr] + [(i, st_path) for i in only_st],
                                  ("id", "only_in"))
    elif unmatched.exists():
        unmatched.unlink()  # from an earlier run on other manifests
    return {"joined": len(joined), "only_asr": only_asr, "only_st": only_st}


def discover_splits(from_dir: Path, asr_suffix: str, st_suffix: str) -> List[str]:
    splits = sorted(p.name[:-len(f"{asr_suffix}.tsv")] for p in from_dir.glob(f"*{asr_suffix}.tsv")
                    if (from_dir / p.name.replace(f"{asr_suffix}.tsv", f"{st_suffix}.tsv")).is_file())
    if not splits:
        raise JoinError(f"--from {from_dir}: no pair of *{asr_suffix}.tsv and *{st_suffix}.tsv manifests "
                        "(run fairseq's prep_mustc_data.py with --task asr and with --task st)")
    return splits


def join_manifests(from_dir: Path, out_dir: Path, splits: Optional[Sequence[str]] = None,
                   asr_suffix: str = "_asr", st_suffix: str = "_st",
                   audio_root: Optional[Path] = None) -> Dict[str, dict]:
    if not from_dir.is_dir():
        raise JoinError(f"--from {from_dir}: no such directory")
    splits = list(splits) if splits else discover_splits(from_dir, asr_suffix, st_suffix)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolve = AudioResolver([audio_root] if audio_root else [from_dir, from_dir.parent])
    write_asr = out_dir.resolve() != from_dir.resolve()
    report = {}
    for split in splits:
        asr_path, st_path = from_dir / f"{split}{asr_suffix}.tsv", from_dir / f"{split}{st_suffix}.tsv"
        for path in (asr_path, st_path):
            if not path.is_file():
                raise JoinError(f"split {split}: {path} does not exist")
        result = report[split] = join_split(asr_path, st_path, out_dir, split, resolve, write_asr)
        line = f"| {split}: {result['joined']} utterances joined into {out_dir / f'{split}.tsv'}"
        for ids, path in ((result["only_asr"], asr_path), (result["only_st"], st_path)):
            if ids:
                line += f"; {len(ids)} only in {path.name}: {_show(ids)}"
        if result["only_asr"] or result["only_st"]:
            line += f" (left out; listed in {out_dir / f'{split}.unmatched.tsv'})"
        print(line, flush=True)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-exporter-join-manifests",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--from", dest="from_dir", type=Path, required=True,
                        help="dir with fairseq's {split}_asr.tsv and {split}_st.tsv (e.g. $MUSTC_ROOT/en-de)")
    parser.add_argument("--out", type=Path, required=True, help="dir to write the joined manifests to")
    parser.add_argument("--splits", nargs="+",
                        help="splits to join (default: every SPLIT with both manifests)")
    parser.add_argument("--asr-suffix", default="_asr", help="default: %(default)s")
    parser.add_argument("--st-suffix", default="_st", help="default: %(default)s")
    parser.add_argument("--audio-root", type=Path,
                        help="where relative audio paths start (default: --from, then its parent)")
    args = parser.parse_args(argv)
    try:
        join_manifests(args.from_dir, args.out, args.splits, args.asr_suffix, args.st_suffix, args.audio_root)
    except (JoinError, s2t_layout.LayoutError) as err:
        parser.exit(1, f"fairseq-exporter-join-manifests: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
