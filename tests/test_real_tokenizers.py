"""The real Llama 3 and Llama 2 tokenizer fixtures against the npm packages they come from.

`real_tokenizers.build()` makes the fixtures (under build/tokenizers/) the first time, with node
and npm; each holds the package's own token ids of >= 300 reference strings.
"""

import json

import pytest

pytest.importorskip("transformers")

import real_tokenizers  # noqa: E402

NAMES = real_tokenizers.NAMES


@pytest.fixture(scope="session")
def tokenizer_dirs():
    return real_tokenizers.build()


_loaded = {}


@pytest.fixture(params=NAMES)
def name(request):
    return request.param


@pytest.fixture
def tok(tokenizer_dirs, name):
    from transformers import AutoTokenizer

    if name not in _loaded:
        _loaded[name] = AutoTokenizer.from_pretrained(str(tokenizer_dirs[name]),
                                                      local_files_only=True)
    return _loaded[name]


@pytest.fixture
def cases(tokenizer_dirs, name):
    return real_tokenizers.load_reference(tokenizer_dirs[name])


def _show(mismatches):
    return "\n".join(f"{text!r}: got {got}, package {want}" for text, got, want in mismatches[:10])


def test_cache_layout(tokenizer_dirs, name):
    path = tokenizer_dirs[name]
    assert path == real_tokenizers.DEFAULT_ROOT / name
    for f in real_tokenizers.FILES:
        assert (path / f).is_file(), f
    reference = json.loads((path / "reference.json").read_text(encoding="utf-8"))
    package = real_tokenizers.PACKAGES[name]
    assert (reference["package"], reference["version"]) == (package.name, package.version)
    assert [c["text"] for c in reference["cases"]] == real_tokenizers.reference_strings(name)
    assert len(reference["cases"]) >= 300


def test_ids_equal_the_packages(tok, cases):
    texts = [c["text"] for c in cases]
    got = tok(texts, add_special_tokens=False)["input_ids"]
    mismatches = [(c["text"], ids, c["ids"]) for c, ids in zip(cases, got) if ids != c["ids"]]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ:\n{_show(mismatches)}"


def test_special_tokens_add_only_bos(tok, cases, name):
    bos = 128000 if name == "llama3" else 1
    texts = [c["text"] for c in cases]
    got = tok(texts)["input_ids"]  # add_special_tokens=True
    mismatches = [(c["text"], ids, [bos] + c["ids"]) for c, ids in zip(cases, got)
                  if ids != [bos] + c["ids"]]
    assert not mismatches, _show(mismatches)


def test_decode_round_trips(tok, cases):
    # Llama 2: the decoder's Strip drops the space sentencepiece prepends (the package's decode
    # with add_preceding_space does the same), so even leading spaces come back.
    mismatches = [(c["text"], tok.decode(c["ids"]), c["text"]) for c in cases
                  if tok.decode(c["ids"]) != c["text"]]
    assert not mismatches, _show(mismatches)
    mismatches = [(c["text"], tok.decode(c["ids"]), c["decoded"]) for c in cases
                  if tok.decode(c["ids"]) != c["decoded"]]
    assert not mismatches, _show(mismatches)


def test_offsets(tok, cases, name):
    enc = tok("Hello the world.", return_offsets_mapping=True)
    assert enc["offset_mapping"] == [(0, 0), (0, 5), (5, 9), (9, 15), (15, 16)]
    ascii_texts = [c["text"] for c in cases if c["text"].isascii() and c["text"]]
    for text, offsets in zip(ascii_texts, tok(ascii_texts, add_special_tokens=False,
                                              return_offsets_mapping=True)["offset_mapping"]):
        if name == "llama3":  # byte-level with trim_offsets=False: the pieces tile the text
            assert "".join(text[s:e] for s, e in offsets) == text, (text, offsets)
        else:  # the prepended "▁" maps to the first character
            assert all(0 <= s <= e <= len(text) for s, e in offsets), (text, offsets)
            assert [s for s, _ in offsets] == sorted(s for s, _ in offsets), (text, offsets)


def test_llama3(tokenizer_dirs):
    from transformers import AutoTokenizer

    tok = _loaded.get("llama3") or AutoTokenizer.from_pretrained(
        str(tokenizer_dirs["llama3"]), local_files_only=True)
    assert len(tok) == 128256
    assert tok.vocab_size == 128000
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9906, 1917]
    assert tok("Hello world")["input_ids"] == [128000, 9906, 1917]
    assert tok.convert_ids_to_tokens(tok(".\n", add_special_tokens=False)["input_ids"]) == [".Ċ"]
    assert tok.convert_ids_to_tokens(tok(" the", add_special_tokens=False)["input_ids"]) == ["Ġthe"]
    assert (tok.bos_token, tok.bos_token_id) == ("<|begin_of_text|>", 128000)
    assert (tok.eos_token, tok.eos_token_id) == ("<|end_of_text|>", 128001)
    assert tok.pad_token is None and tok.unk_token is None
    for token, token_id in real_tokenizers.LLAMA3_NAMED_SPECIAL.items():
        assert tok.convert_tokens_to_ids(token) == token_id
    specials = tok.added_tokens_decoder
    assert sorted(specials) == list(range(128000, 128256))
    assert all(t.special for t in specials.values())
    ids = tok("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
              add_special_tokens=False)["input_ids"]
    assert ids[0] == 128006 and ids[2] == 128007 and ids[-1] == 128009
    assert tok.decode(ids, skip_special_tokens=True) == "user\n\nHi"
    assert tok("a", "b")["input_ids"] == [128000, 64, 128000, 65]


def test_llama2(tokenizer_dirs):
    from transformers import AutoTokenizer

    tok = _loaded.get("llama2") or AutoTokenizer.from_pretrained(
        str(tokenizer_dirs["llama2"]), local_files_only=True)
    assert len(tok) == 32000
    assert tok.vocab_size == 32000
    assert tok("Hello world")["input_ids"] == [1, 15043, 3186]
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [15043, 3186]
    ids = tok("\n", add_special_tokens=False)["input_ids"]
    assert ids == [29871, 13] and tok.convert_ids_to_tokens(13) == "<0x0A>"
    assert tok("🦙", add_special_tokens=False)["input_ids"] == [29871, 243, 162, 169, 156]
    assert tok(" grabbed", add_special_tokens=False)["input_ids"] == [29871, 2646, 1327, 287]
    assert [(t, i) for t, i in zip(("<unk>", "<s>", "</s>"), (tok.unk_token_id, tok.bos_token_id,
                                                             tok.eos_token_id))] == \
        [("<unk>", 0), ("<s>", 1), ("</s>", 2)]
    assert (tok.unk_token, tok.bos_token, tok.eos_token) == ("<unk>", "<s>", "</s>")
    assert tok.pad_token is None
    assert tok.convert_ids_to_tokens([3, 258]) == ["<0x00>", "<0xFF>"]


def test_build_uses_the_cache(tokenizer_dirs, monkeypatch):
    def fail(*args):
        raise AssertionError("rebuilt a complete cache")

    monkeypatch.setattr(real_tokenizers, "build_one", fail)
    assert real_tokenizers.build() == tokenizer_dirs


def test_missing_node_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(real_tokenizers.shutil, "which", lambda cmd: None)
    with pytest.raises(RuntimeError, match=r"llama3-tokenizer-js@1\.2\.0.*`npm`.*npm pack"):
        real_tokenizers.build(tmp_path, names=("llama3",))
    assert list(tmp_path.iterdir()) == []  # no half cache, no temporary left


def test_integrity_mismatch_is_a_clear_error(tmp_path):
    tarball = tmp_path / "llama-tokenizer-js-1.2.2.tgz"
    tarball.write_bytes(b"not the package")
    with pytest.raises(RuntimeError, match=r"llama-tokenizer-js@1\.2\.2.*npm pack.*integrity"):
        real_tokenizers.verify_integrity(tarball, real_tokenizers.PACKAGES["llama2"])


def test_llama2_merges_follow_the_converter(tokenizer_dirs):
    data = json.loads((tokenizer_dirs["llama2"] / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    vocab_list = sorted(vocab, key=vocab.get)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
              for m in data["model"]["merges"]]
    assert merges == real_tokenizers.llama2_merges_from_vocab(vocab_list)
