from fairseq_exporter.models import exporter_model  # noqa: F401  (registers "exporter")
