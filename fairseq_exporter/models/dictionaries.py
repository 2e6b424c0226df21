"""The exporter's central requirement: the ASR model writes its 1-best in exactly the
vocabulary the MT model reads. Checked symbol by symbol, since two vocabularies of the
same size can still differ in order, and a silent mismatch would feed the MT the
wrong embedding rows."""

import hashlib


class DictionaryMismatchError(ValueError):
    pass


def first_difference(a, b):
    """Index of the first differing symbol of two fairseq dictionaries, or None."""
    for i, (x, y) in enumerate(zip(a.symbols, b.symbols)):
        if x != y:
            return i
    if len(a) != len(b):
        return min(len(a), len(b))
    return None


def check_same_dictionary(a, a_name: str, b, b_name: str, advice: str):
    i = first_difference(a, b)
    if i is None:
        return

    def sym(d):
        return repr(d.symbols[i]) if i < len(d) else "(end)"

    raise DictionaryMismatchError(
        f"{a_name} ({len(a)} symbols) differs from {b_name} ({len(b)} symbols) "
        f"at index {i}: {sym(a)} vs {sym(b)}. {advice}"
    )


def fingerprint(dictionary) -> str:
    """Size and hash of the symbol list, stored in a saved exporter so that decoding
    with other dictionaries is refused rather than silently wrong."""
    digest = hashlib.sha1("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()[:12]
    return f"{len(dictionary)}:{digest}"
