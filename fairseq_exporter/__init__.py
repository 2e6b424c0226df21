"""fairseq_exporter: couple a speech recognizer and a text translator through an exporter.

Implements "Coupling Speech Encoders with Downstream Text Models" (Chelba & Schalkwyk,
2024): the exporter maps the ASR model's state for each token of its 1-best transcript
into the MT model's token-embedding space, so the MT loss reaches the ASR model even
when the MT model is frozen. Loaded by ``fairseq-train --user-dir fairseq_exporter``;
importing it registers the task, model and criterion.
"""

__version__ = "0.1.0"

from fairseq_exporter import compat

compat.allow_fairseq_checkpoint_globals()
compat.make_checkpoint_copies_atomic()

from fairseq_exporter import criterions, models, tasks  # noqa: E402,F401  (registration)
from fairseq_exporter.data import lm_pieces  # noqa: E402,F401  (the hf_tokenizer bpe)
