"""The toy study's data: a seeded two-domain grammar, espeak speech, the corpus writer."""
