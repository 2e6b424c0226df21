"""The LM back-end on real LLM tokenizers (Llama 3: byte-level BPE; Llama 2: sentencepiece
with byte fallback; tests/real_tokenizers.py) with tiny random Llamas of their full
vocabularies and an ASR trained on their pieces, on punctuated transcripts with the default
template. The reference is built from text alone (tests/text_cascade.py):

1. --coupling onebest == transformers' generate() on prompt.format(src=<the ASR's transcript>),
   token for token, greedy and beam 4, for the ASR's 1-best, the reference transcripts' pieces
   and 1-bests with pieces split where the tokenizer would not split them;
2. --coupling exporter with the exporter output := the LM's rows of the 1-best's pieces gives
   the same translations (merged pieces such as Llama 3's `.Ċ` included);
3. answers end as a user's do: at the first token holding a line break, whose text before
   the break is kept; translation targets end with that token."""

import functools

import pytest
import torch

transformers = pytest.importorskip("transformers")

import piece_cascade  # noqa: E402
import real_tokenizers  # noqa: E402
import text_cascade  # noqa: E402
from exporter_setup import build, first_batch  # noqa: E402

from fairseq_exporter.models.coupling import Recognition  # noqa: E402
from fairseq_exporter.models.onebest import OneBest  # noqa: E402

MAX_NEW = 8
PROMPT = piece_cascade.PROMPT


@pytest.fixture(scope="module", params=real_tokenizers.NAMES)
def pieces(request, tmp_path_factory):
    tokenizer_dir = real_tokenizers.build()[request.param]
    return piece_cascade.build(tmp_path_factory.mktemp(request.param), tokenizer_dir)


@functools.lru_cache(maxsize=None)
def _stops(lm_dir):
    from transformers import AutoTokenizer

    return text_cascade.stop_ids(AutoTokenizer.from_pretrained(lm_dir, local_files_only=True))


def _model(pieces, coupling):
    torch.manual_seed(0)
    _, task, model, _ = build(pieces, "--coupling", coupling, "--onebest-max-len", "30",
                              text_model=("--lm-checkpoint", str(pieces["lm"]), "--lm-prompt", PROMPT))
    model.eval()
    return task, model


def _padded(rows, pad, eos):
    width = max(len(r) for r in rows) + 1
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r) + 1] = torch.tensor(r + [eos])
    return out


def _onebests(task, model, sample):
    """The ASR's 1-best, the reference transcripts' pieces, and those with pieces split."""
    src = task.transcript_dictionary
    with torch.no_grad():
        asr = model.encoder.recognize(**sample["net_input"]).onebest.tokens
    reference = [[t for t in row if t not in (src.pad(), src.eos())] for row in sample["net_input"]["src_txt_tokens"].tolist()]
    halves = piece_cascade.split_pieces(task.target_dictionary.tokenizer, src.symbols)
    resplit = [[h for t in row for h in ([src.index(p) for p in halves[src[t]]] if src[t] in halves else [t])]
               for row in reference]
    assert resplit != reference
    return {"asr": asr, "reference": _padded(reference, src.pad(), src.eos()),
            "resplit": _padded(resplit, src.pad(), src.eos())}


def _check_text_cascade(task, model, sample, tokens, beam, lm_dir):
    generator = task.build_generator([model], _gen_args(beam))
    net_input = dict(sample["net_input"], recognition=Recognition(None, OneBest(tokens=tokens)))
    hypos = generator.generate([model], {**sample, "net_input": net_input})
    lm, tokenizer = model.decoder.lm.module, task.target_dictionary.tokenizer
    lengths = []
    for row, ids in enumerate(tokens.tolist()):
        transcript = task._detokenize_source(ids)
        answer, text = text_cascade.translate(lm, tokenizer, PROMPT, transcript, beam=beam, max_new=MAX_NEW,
                                              stops=_stops(lm_dir))
        assert hypos[row][0]["tokens"].tolist() == answer, (row, transcript)
        assert task.target_dictionary.string(hypos[row][0]["tokens"]) == text
        lengths.append(len(answer))
    return lengths


def _gen_args(beam):
    from argparse import Namespace

    return Namespace(beam=beam, nbest=1, max_len_a=0, max_len_b=MAX_NEW, min_len=1, lenpen=1.0)


@pytest.mark.parametrize("beam", [1, 4])
def test_onebest_and_exporter_rows_are_the_users_text_cascade(pieces, beam):
    task, plain = _model(pieces, "onebest")
    _, coupled = _model(pieces, "exporter")
    coupled.encoder.export = lambda rec: coupled.encoder.embedding_rows(rec.onebest.tokens)
    sample = first_batch(task, max_sentences=6)
    for name, tokens in _onebests(task, plain, sample).items():
        if beam > 1 and name == "asr":
            continue  # the beam runs on the two 1-bests of known pieces (time)
        lengths = _check_text_cascade(task, plain, sample, tokens, beam, pieces["lm"])
        assert max(lengths) > 2, "a random LM's answers are several tokens long"
        _check_text_cascade(task, coupled, sample, tokens, beam, pieces["lm"])


def test_the_asr_writes_the_prompts_pieces(pieces):
    """What the ASR is trained to write (the hf_tokenizer bpe) is what the text prompt holds,
    but for pieces that also hold template text (Llama 3's `.Ċ`): no utterance has a
    mismatch inside its transcript; split pieces are found as mismatches."""
    task, plain = _model(pieces, "onebest")
    sample = first_batch(task, max_sentences=6)
    found = _onebests(task, plain, sample)
    prompts = plain.decoder.prompts(found["reference"]).prompts
    assert sum(p.inner_mismatches > 0 for p in prompts) == 0
    exact = sum(1 for p in prompts for a in p.exact if a >= 0)
    fed = int(plain.encoder.fed(found["reference"]).sum())
    assert exact >= fed - len(prompts)  # at most the last piece merges with the template
    assert sum(p.inner_mismatches > 0 for p in plain.decoder.prompts(found["resplit"]).prompts) > 0


def test_answers_end_at_the_line_break_and_keep_its_text(pieces):
    task, plain = _model(pieces, "onebest")
    lm_dict = task.target_dictionary
    tokenizer = lm_dict.tokenizer
    target = lm_dict.encode_line("Der Hund sieht.").tolist()
    last = tokenizer.convert_ids_to_tokens(target[-1])
    assert last in (".Ċ", "<0x0A>"), last  # Llama 3 merges the full stop and the line break; Llama 2 byte-falls back
    assert lm_dict.eos() not in target  # the line break ends the answer
    assert lm_dict.string(torch.tensor(target)) == "Der Hund sieht."
    # the target is the text cascade's answer: the pieces after the prompt of prompt + answer
    prompt = PROMPT.format(src="The dog sees.")
    whole = tokenizer(prompt + " Der Hund sieht.\n")["input_ids"]
    assert whole[len(tokenizer(prompt)["input_ids"]):] == target


@pytest.mark.parametrize("name", real_tokenizers.NAMES)
def test_a_template_starting_with_the_bos_text_gets_one_bos(name):
    """A chat text rendered by hand starts with the tokenizer's BOS text: the prompt holds one
    BOS, as apply_chat_template's ids do, and the 1-best's pieces are still found in it."""
    from transformers import AutoTokenizer

    from fairseq_exporter.models.lm_prompt import PromptTemplate

    tokenizer = AutoTokenizer.from_pretrained(real_tokenizers.build()[name], local_files_only=True)
    bos = tokenizer.bos_token
    plain, rendered = PromptTemplate(PROMPT, tokenizer), PromptTemplate(bos + PROMPT, tokenizer)
    pieces = tokenizer("The dog sees the cat", add_special_tokens=False)["input_ids"]
    ids = rendered.build(pieces).ids
    assert ids.count(tokenizer.bos_token_id) == 1 and ids == plain.build(pieces).ids
    assert ids == tokenizer(bos + PROMPT.format(src="The dog sees the cat"), add_special_tokens=False)["input_ids"]
    assert rendered.build(pieces).exact == plain.build(pieces).exact
    assert sum(i >= 0 for i in plain.build(pieces).exact) >= len(pieces) - 1  # (the first may merge a space)


def test_prompt_fit_counts_the_transcripts_whose_pieces_the_prompt_splits_otherwise(pieces, tmp_path, capsys):
    """fairseq-exporter-lm-vocab --prompt-fit: transcripts written as the hf_tokenizer bpe
    writes them fit the prompt; a split piece is counted; an unknown piece is named."""
    from transformers import AutoTokenizer

    from fairseq_exporter.cli.lm_vocab import main
    from fairseq_exporter.models.lm_prompt import transcript_ids

    tokenizer = AutoTokenizer.from_pretrained(pieces["lm"], local_files_only=True)
    lines = [row.split("\t")[3] for row in (pieces["s2t"] / "test.tsv").read_text().splitlines()[1:]]
    written = [" ".join(tokenizer.convert_ids_to_tokens(transcript_ids(tokenizer, t))) for t in lines]
    (tmp_path / "fit.txt").write_text("\n".join(written) + "\n")
    main([str(pieces["lm"]), "--prompt-fit", str(tmp_path / "fit.txt")])
    out = capsys.readouterr().out
    assert f"{len(lines)} transcripts" in out and "splits otherwise in 0 (0.0%)" in out
    halves = piece_cascade.split_pieces(tokenizer, written[0].split()[1:])  # a split inside a word
    first = next(p for p, h in halves.items() if all(half.strip("\u0120\u2581") for half in h))
    (tmp_path / "split.txt").write_text(written[0].replace(first, " ".join(halves[first]), 1) + "\n")
    main([str(pieces["lm"]), "--prompt-fit", str(tmp_path / "split.txt")])
    assert "splits otherwise in 1 (100.0%)" in capsys.readouterr().out
    (tmp_path / "bad.txt").write_text("\nnot-a-piece-of-it\n")
    with pytest.raises(SystemExit, match="bad.txt line 2: 'not-a-piece-of-it' is not a piece"):
        main([str(pieces["lm"]), "--prompt-fit", str(tmp_path / "bad.txt")])


@pytest.mark.parametrize("pieces", ["llama3"], indirect=True)
def test_the_lm_backend_benchmark_runs_quick(pieces, monkeypatch, capsys):
    """benchmarks/lm_backend.py --quick on this cascade (in this process: no fairseq start-up):
    every row it measures, with a ratio."""
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    import lm_backend

    lm_backend.main(["--quick", "--cascade", str(pieces["root"])])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| Llama 3 vocab")]
    whats = [row.split("|")[2].strip() for row in rows]
    assert [w.split(",")[0].split(" (")[0] for w in whats] == [
        "stage-2 step", "its back-end: exporter + prompt + LM", "the same", "the LM's own fwd + bwd",
        "recovery metric", "recovery metric", "fairseq-generate --coupling exporter", "transformers generate()",
        "fairseq-generate --coupling exporter", "transformers generate()"], out
    assert all(row.split("|")[5].strip().endswith(("x", "of a step")) for row in rows), out
