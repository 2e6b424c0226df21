"""The README's training, generation and scoring commands run as written, on the tiny
cascade: DATA, asr.pt, mt.pt and fairseq_exporter are links in the working directory,
and only --max-update is made small."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_blocks():
    """The README's bash blocks that run fairseq or the scorer."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    return [b for b in blocks if re.search(r"^\s*(fairseq-|for )", b, re.MULTILINE)]


def test_readme_train_generate_and_score_commands_run(cascade, tmp_path):
    blocks = _readme_blocks()
    assert len(blocks) == 2 and "fairseq-train" in blocks[0] and "fairseq-exporter-score" in blocks[1]
    for name, target in (("DATA", cascade["s2t"]), ("asr.pt", cascade["asr"]), ("mt.pt", cascade["mt"]),
                         ("fairseq_exporter", REPO / "fairseq_exporter")):
        (tmp_path / name).symlink_to(target)
    script = "\n".join([
        "set -euo pipefail",
        # the console scripts, as the installed entry points run them
        f'fairseq-train() {{ "{sys.executable}" -m fairseq_cli.train "$@" --num-workers 0 --data-buffer-size 0; }}',
        f'fairseq-generate() {{ "{sys.executable}" -m fairseq_cli.generate "$@"; }}',
        f'fairseq-exporter-score() {{ "{sys.executable}" -m fairseq_exporter.cli.score "$@"; }}',
        blocks[0].replace("--max-update 2000", "--max-update 2"),
        blocks[1],
    ])
    assert "--max-update 2 " in script
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "exp/stage2/checkpoint_best.pt").is_file()
    for coupling in ("exporter", "onebest"):
        assert (tmp_path / f"exp/stage2/gen-{coupling}/transcripts-test.txt").is_file()
    assert re.search(r"^system .*\d", proc.stdout, re.MULTILINE) and "BLEU" in proc.stdout, proc.stdout[-2000:]
