from fairseq_exporter.criterions import exporter_loss  # noqa: F401  (registers "exporter")
