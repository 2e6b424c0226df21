"""fairseq_exporter: couple a speech recognizer and a text translator through an exporter.

Implements "Coupling Speech Encoders with Downstream Text Models" (Chelba & Schalkwyk,
2024): the exporter maps the ASR model's state for each token of its 1-best transcript
into the MT model's token-embedding space, so the MT loss reaches the ASR model even
when the MT model is frozen. Loaded by ``fairseq-train --user-dir fairseq_exporter``;
importing it registers the task, model and criterion.
"""

__version__ = "0.1.0"

import os
import sys

# Entry points that need neither fairseq's registries nor its checkpoints (the scorer, the data
# preparation, the toy's reports and corpus): importing fairseq to register the plugin would be
# most of their start-up (3 s of CPU).
FAIRSEQ_FREE_ENTRY_POINTS = {
    "fairseq_exporter.cli.score": "fairseq-exporter-score",
    "fairseq_exporter.cli.prep_mustc": "fairseq-exporter-prep-mustc",
    "fairseq_exporter.cli.join_manifests": "fairseq-exporter-join-manifests",
    "fairseq_exporter.results_table": None,
    "fairseq_exporter.toy.report": None,
    "fairseq_exporter.toy.published": None,
    "fairseq_exporter.toy.make_corpus": None,
}


def _entry_point() -> str:
    """The module this process runs: ``python -m MODULE`` (while the package of MODULE is
    imported, sys.argv[0] is "-m") or a console script, by its name."""
    if sys.argv and sys.argv[0] == "-m" and "-m" in getattr(sys, "orig_argv", ()):
        after = sys.orig_argv[sys.orig_argv.index("-m") + 1:]
        return after[0] if after else ""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return next((module for module, name in FAIRSEQ_FREE_ENTRY_POINTS.items() if name and name == script), "")


if _entry_point() not in FAIRSEQ_FREE_ENTRY_POINTS:
    from fairseq_exporter import compat

    compat.allow_fairseq_checkpoint_globals()
    compat.make_checkpoint_copies_atomic()

    from fairseq_exporter import criterions, models, tasks  # noqa: E402,F401  (registration)
    from fairseq_exporter.data import lm_pieces  # noqa: E402,F401  (the hf_tokenizer bpe)
