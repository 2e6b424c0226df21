"""The toy report's count of ambiguous-noun senses in the translations."""

from fairseq_exporter.toy.report import sense_counts, sense_forms


def test_sense_counts_reads_hypotheses_or_references_and_all_german_forms(tmp_path):
    gen = tmp_path / "generate-test.txt"
    gen.write_text("\n".join([
        "S-0\tthe bank", "T-0\tDas Ufer ist nass.", "H-0\t-0.1\tDie Bank ist nass.",
        "D-0\t-0.1\tDie Bank ist nass.",
        "T-1\tIch sehe die Fledermäuse, die Banken und den Ufern.",
        "D-1\t-0.2\tIch sehe die Schläger am Ufer.",
    ]) + "\n", encoding="utf-8")
    forms = sense_forms()
    assert {"Ufer", "Fledermaus", "Fledermäuse"} <= forms["task"]
    assert {"Bank", "Banken", "Schläger"} <= forms["general"]
    assert sense_counts(gen, forms) == (1, 2)  # D- lines: Ufer / Bank, Schläger
    assert sense_counts(gen, forms, prefix="T") == (3, 1)  # Ufer, Fledermäuse, Ufern / Banken


def test_runaway_outputs_counts_translations_over_twice_their_reference(tmp_path):
    gen = tmp_path / "generate-test.txt"
    gen.write_text("\n".join([
        "T-0\tEin zwei drei.", "D-0\t-0.1\tEin zwei drei vier fünf sechs sieben.",  # 7 > 2 * 3
        "T-1\tEin zwei drei.", "D-1\t-0.1\tEin zwei drei vier fünf sechs.",  # 6, not more than twice
        "T-2\tEins.", "D-2\t-0.1\tEins.",
    ]) + "\n", encoding="utf-8")
    from fairseq_exporter.toy.report import runaway_outputs
    assert runaway_outputs(gen) == 1
