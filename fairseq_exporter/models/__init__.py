from fairseq_exporter.models import exporter_model  # noqa: F401  (registers "exporter")
from fairseq_exporter.models import source_table_mt  # noqa: F401  (registers "source_table_transformer")
