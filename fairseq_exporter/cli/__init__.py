"""Command-line tools of fairseq_exporter (console entry points)."""
