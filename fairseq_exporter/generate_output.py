"""What ``fairseq-generate`` prints for the exporter task, and its one reader.

fairseq prints ``T-<id>`` (reference translation), ``H-<id>``/``D-<id>`` (hypothesis,
tokenized/detokenized, after a score) and ``P-<id>``. The task adds, per utterance, the
reference transcript and the ASR 1-best, so that one run scores WER and BLEU:

    S-<id>\\t<reference transcript>       (fairseq's own "source" line, which it does not
                                          print for speech input)
    ASR-<id>\\t<ASR 1-best, detokenized>  (not A-: fairseq's --print-alignment prints A-)

A hypothesis is one line: a Hugging Face text model's (an instruct LM's answer may hold line
breaks) is printed with ``\\`` for a backslash and ``\\n`` / ``\\r`` for a line break
(``one_line``), and the reader turns every H-/D-/T- text back (``from_one_line``). A fairseq MT
writes its text unchanged, so its rare literal ``\\n`` would be read as a line break.

On stdout (no ``--results-path``) these lines go to the same stream as fairseq's. With
``--results-path R`` fairseq writes ``R/generate-<subset>.txt``, a file it gives a task
no handle on, so the task writes its lines to ``R/transcripts-<subset>.txt`` beside it
and the reader joins the two by id.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

TRANSCRIPT = "S"
ONEBEST = "ASR"

# "<kind>-<id>\t<text>"; other lines (logging, the closing BLEU summary, P- scores, A-
# alignments) are not read.
_LINE = re.compile(r"^(S|ASR|T|H|D)-(\d+)\t(.*)$")
_FIELDS = {"S": "source", "ASR": "asr", "T": "reference", "H": "hypothesis", "D": "detok_hypothesis"}


class GenerateOutputError(Exception):
    """A generate output that cannot be read; the message names the file."""


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPE = re.compile(r"\\(\\|n|r)")


def one_line(text: str) -> str:
    """``text`` on one line of a generate output (a backslash and line breaks escaped)."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def from_one_line(text: str) -> str:
    """The text ``one_line`` wrote."""
    return _UNESCAPE.sub(lambda m: {"\\": "\\", "n": "\n", "r": "\r"}[m.group(1)], text)


def transcripts_path(results_path: str, subset: str) -> str:
    """Where the task writes its S-/ASR- lines beside fairseq's ``generate-<subset>.txt``."""
    return os.path.join(results_path, f"transcripts-{subset}.txt")


def transcript_lines(ids: Iterable[int], transcripts: Optional[Iterable[str]], onebests: Iterable[str]) -> str:
    """The task's lines for a batch: S- (when the reference transcripts are known) and ASR-."""
    lines = []
    for i, (sample_id, onebest) in enumerate(zip(ids, onebests)):
        if transcripts is not None:
            lines.append(f"{TRANSCRIPT}-{sample_id}\t{transcripts[i]}\n")
        lines.append(f"{ONEBEST}-{sample_id}\t{onebest}\n")
    return "".join(lines)


@dataclass
class GenerateRecord:
    """What was printed for one sample id (its first hypothesis only)."""

    source: Optional[str] = None  # S-: reference transcript
    asr: Optional[str] = None  # ASR-: ASR 1-best transcript
    reference: Optional[str] = None  # T-: reference translation
    hypothesis: Optional[str] = None  # H-: in the target dictionary's tokenization
    detok_hypothesis: Optional[str] = None  # D-: the same, detokenized

    @property
    def output(self) -> Optional[str]:
        """The hypothesis to score: the detokenized one when fairseq printed it."""
        return self.detok_hypothesis if self.detok_hypothesis is not None else self.hypothesis


def companion(path: Union[str, Path]) -> Optional[Path]:
    """``transcripts-<subset>.txt`` beside a ``generate-<subset>.txt``, if it exists."""
    path = Path(path)
    match = re.fullmatch(r"generate-(.+)\.txt", path.name)
    if match is None:
        return None
    other = path.with_name(f"transcripts-{match.group(1)}.txt")
    return other if other.is_file() else None


def read_generate_output(path: Union[str, Path]) -> Dict[int, GenerateRecord]:
    """``{sample id: GenerateRecord}`` of a generate output and of its transcripts file.

    With ``--nbest`` > 1 fairseq prints several H-/D- lines per id, best first: only the
    first is kept. Raises GenerateOutputError when a file cannot be read.
    """
    records: Dict[int, GenerateRecord] = {}
    paths = [Path(path)]
    if companion(path) is not None:
        paths.append(companion(path))
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                for line in f:
                    match = _LINE.match(line.rstrip("\n"))
                    if match is None:
                        continue
                    kind, sample_id, text = match.groups()
                    if kind in ("H", "D"):
                        text = text.partition("\t")[2]  # drop the "<score>\t" prefix
                    if kind in ("H", "D", "T"):
                        text = from_one_line(text)
                    record = records.setdefault(int(sample_id), GenerateRecord())
                    field = _FIELDS[kind]
                    if getattr(record, field) is None:
                        setattr(record, field, text)
        except OSError as e:
            raise GenerateOutputError(f"{p}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise GenerateOutputError(f"{p}: not UTF-8 text ({e.reason})") from e
    return records
