from fairseq_exporter.tasks import speech_to_text_exporter  # noqa: F401  (registers the task)
