"""The decoder-only back-end (--lm-checkpoint): a frozen Hugging Face causal LM behind the
exporter, on tiny random Llama- and GPT-2-architecture LMs built here (nothing downloaded).

1. the 1-best cascade is the user's text cascade (transformers' generate() on the prompt
   written from the ASR's transcript), greedy and beam 4; with the exporter output equal to
   the LM's embedding rows of the 1-best, generation is the 1-best cascade's, batched with
   prompts of unequal length == each prompt alone (tests/test_lm_real_tokenizers.py: the
   same on Llama 3's and Llama 2's tokenizers);
2. the LM is frozen: unchanged by a stage-2 step, while the ASR encoder gets gradient;
3. fairseq-train (stages 1 and 2) and fairseq-generate run on such a checkpoint, which
   holds no LM weights and refuses another LM."""

import copy
import itertools
from argparse import Namespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

import text_cascade  # noqa: E402
import tiny_lm  # noqa: E402
from exporter_setup import build, first_batch  # noqa: E402
from tiny_cascade import run  # noqa: E402

from fairseq_exporter.generate_output import read_generate_output  # noqa: E402
from fairseq_exporter.models.coupling import Recognition  # noqa: E402
from fairseq_exporter.models.onebest import OneBest  # noqa: E402

ARCHS = ("llama", "gpt2")
MAX_NEW = 8


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    return {arch: tiny_lm.build(root / arch, arch) for arch in ARCHS}


def _build(cascade, lm_dir, *extra):
    torch.manual_seed(0)
    return build(cascade, "--onebest-max-len", "12", *extra,
                 text_model=("--lm-checkpoint", str(lm_dir), "--lm-prompt", tiny_lm.PROMPT))


def _generate(task, model, sample, beam, recognition):
    gen_args = Namespace(beam=beam, max_len_a=0, max_len_b=MAX_NEW, min_len=1, prefix_size=0, eos_token=None)
    generator = task.build_generator([model], gen_args)
    net_input = dict(sample["net_input"], recognition=recognition)
    return generator.generate([model], {**sample, "net_input": net_input})


def _rows(sample, recognition, rows):
    """The sample and the 1-best of ``rows`` alone (what the onebest coupling reads)."""
    index = torch.tensor(rows)
    net_input = {k: v.index_select(0, index) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
    onebest = OneBest(tokens=recognition.onebest.tokens.index_select(0, index))
    return {**sample, "id": sample["id"][index], "net_input": net_input}, Recognition(None, onebest)


def _setup(cascade, lm_dir):
    _, task, model, _ = _build(cascade, lm_dir, "--coupling", "exporter")
    _, _, plain, _ = _build(cascade, lm_dir, "--coupling", "onebest")
    model.eval(), plain.eval()
    sample = first_batch(task)
    with torch.no_grad():
        recognition = model.encoder.recognize(**sample["net_input"])
    return task, model, plain, sample, recognition


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("beam", [1, 4])
def test_lm_fed_its_own_embedding_rows_is_the_onebest_cascade(cascade, lms, arch, beam):
    task, model, plain, sample, recognition = _setup(cascade, lms[arch])
    fed = model.encoder.fed(recognition.onebest.tokens)
    assert fed.sum(1).unique().numel() > 1, "the test needs prompts of unequal length"
    model.encoder.export = lambda rec: model.encoder.embedding_rows(rec.onebest.tokens)
    coupled = _generate(task, model, sample, beam, recognition)
    cascade_out = _generate(task, plain, sample, beam, recognition)
    for c, p in zip(coupled, cascade_out):
        assert torch.equal(c[0]["tokens"], p[0]["tokens"])
        assert torch.allclose(c[0]["positional_scores"], p[0]["positional_scores"])
    # batched (left-padded prompts) == one prompt at a time
    for row in range(len(sample["id"])):
        one_sample, one_rec = _rows(sample, recognition, [row])
        alone = _generate(task, plain, one_sample, beam, one_rec)[0]
        assert torch.equal(alone[0]["tokens"], cascade_out[row][0]["tokens"]), row
        assert torch.allclose(alone[0]["positional_scores"], cascade_out[row][0]["positional_scores"], atol=1e-4)


def _transcripts(task, recognition):
    """The ASR's transcripts as fairseq-generate prints them (its ASR- lines)."""
    return [task._detokenize_source(row) for row in recognition.onebest.tokens.tolist()]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("beam", [1, 4])
def test_onebest_is_the_users_text_cascade(cascade, lms, arch, beam):
    """fairseq-generate's 1-best cascade == transformers' generate() on the prompt the user
    writes from the ASR's transcript, token for token; its positional scores are the LM's
    own scores of those tokens after that prompt."""
    task, _, plain, sample, recognition = _setup(cascade, lms[arch])
    hypos = _generate(task, plain, sample, beam, recognition)
    lm, tokenizer = plain.decoder.lm.module, task.target_dictionary.tokenizer
    for row, transcript in enumerate(_transcripts(task, recognition)):
        answer, text = text_cascade.translate(lm, tokenizer, tiny_lm.PROMPT, transcript, beam=beam, max_new=MAX_NEW)
        assert hypos[row][0]["tokens"].tolist() == answer, (row, transcript)
        assert task.target_dictionary.string(hypos[row][0]["tokens"]) == text
        expected = text_cascade.lm_scores(lm, tokenizer, tiny_lm.PROMPT, transcript, answer)
        assert torch.allclose(hypos[row][0]["positional_scores"], expected, atol=1e-4), row


# transformers' GenerationConfig fields that do not choose the tokens of a search: what is
# returned or kept, caching and compilation, assisted decoding without an assistant given
NOT_THE_SEARCH = {"_from_model_config", "transformers_version", "output_attentions", "output_hidden_states",
                  "output_logits", "output_scores", "return_dict_in_generate", "use_cache", "cache_config",
                  "cache_implementation", "max_cache_len", "compile_config", "disable_compile",
                  "continuous_batching_config", "prefill_chunk_size", "is_assistant", "assistant_confidence_threshold",
                  "assistant_early_exit", "assistant_ensemble_weight", "assistant_lookbehind", "target_lookbehind",
                  "num_assistant_tokens", "num_assistant_tokens_schedule", "speculation_type", "use_mtp"}


def _search_changing_values(first):
    """For every GenerationConfig field that changes a search, a value that would change this
    one (``first``: the first answer tokens of the plain search)."""
    return {"do_sample": True, "temperature": 0.05, "top_k": 2, "top_p": 0.05, "min_p": 0.9, "typical_p": 0.05,
            "epsilon_cutoff": 0.2, "eta_cutoff": 0.2, "top_h": 0.1, "num_beams": 3, "num_beam_groups": 2,
            "diversity_penalty": 5.0, "penalty_alpha": 0.6, "repetition_penalty": 5.0,
            "encoder_repetition_penalty": 5.0, "length_penalty": -5.0, "no_repeat_ngram_size": 1,
            "encoder_no_repeat_ngram_size": 1, "bad_words_ids": [[first[-1]]], "force_words_ids": [[first[0]]],
            "constraints": [], "renormalize_logits": True, "forced_bos_token_id": first[0],
            "forced_eos_token_id": first[0], "remove_invalid_values": True,
            "exponential_decay_length_penalty": (1, 5.0), "suppress_tokens": first, "begin_suppress_tokens": first,
            "sequence_bias": {(first[0],): -9.0}, "guidance_scale": 3.0, "low_memory": True,
            "watermarking_config": {"greenlist_ratio": 0.5, "bias": 9.0}, "num_return_sequences": 2,
            "max_length": 2, "max_new_tokens": 1, "min_length": 50, "min_new_tokens": 6, "max_time": 1e-9,
            "stop_strings": ["a"], "early_stopping": False, "eos_token_id": [first[0]], "pad_token_id": first[0],
            "bos_token_id": first[0], "decoder_start_token_id": first[0], "token_healing": True,
            "dola_layers": "high", "prompt_lookup_num_tokens": 2, "max_matching_ngram_size": 2}


def test_the_lms_own_generation_config_is_not_read_field_by_field(cascade, lms):
    """An instruct model's generation_config (sampling, a repetition penalty, suppressed
    tokens, a forced end, stop strings...) does not change fairseq-generate's search: every
    field of transformers' GenerationConfig that chooses tokens is set on the LM's own
    generation_config, one at a time, and the greedy search is unchanged (the beam search
    with all the beam's at once); a field transformers adds fails here by name until it is
    placed in one list or the other."""
    from transformers import GenerationConfig

    task, _, plain, sample, recognition = _setup(cascade, lms["llama"])
    before = {beam: [h[0]["tokens"].tolist() for h in _generate(task, plain, sample, beam, recognition)]
              for beam in (1, 4)}
    first = sorted({h[0] for h in before[1]})
    values = _search_changing_values(first)
    fields = set(GenerationConfig().to_dict())
    assert fields - NOT_THE_SEARCH - set(values) == set(), "a GenerationConfig field neither list places"
    lm = plain.decoder.lm.module
    kept = lm.generation_config

    def generate_with(beam, **settings):
        lm.generation_config = copy.deepcopy(kept)
        for name, value in settings.items():
            setattr(lm.generation_config, name, value)
        try:
            return [h[0]["tokens"].tolist() for h in _generate(task, plain, sample, beam, recognition)]
        finally:
            lm.generation_config = kept

    for name in sorted(fields & set(values)):
        assert generate_with(1, **{name: values[name]}) == before[1], name
    beam_fields = ("num_beams", "length_penalty", "early_stopping", "no_repeat_ngram_size", "repetition_penalty",
                   "num_return_sequences", "min_new_tokens", "suppress_tokens", "eos_token_id")
    assert generate_with(4, **{name: values[name] for name in beam_fields}) == before[4]


@pytest.mark.parametrize("arch", ARCHS)
def test_a_random_exporter_changes_the_translation(cascade, lms, arch):
    """The guarantee test above must be able to fail: the LM's scores under an untrained
    exporter are not the 1-best cascade's."""
    task, model, plain, sample, recognition = _setup(cascade, lms[arch])
    prev = torch.full((len(sample["id"]), 1), task.target_dictionary.eos())
    with torch.no_grad():
        coupled, _ = model.decoder(prev, encoder_out=model.encoder(**sample["net_input"], recognition=recognition))
        cascade_out, _ = plain.decoder(prev, encoder_out=plain.encoder(**sample["net_input"], recognition=recognition))
    assert (coupled - cascade_out).abs().max() > 1e-3


def test_frozen_lm_is_unchanged_and_passes_gradient_to_the_asr(cascade, lms):
    _, task, model, criterion = _build(cascade, lms["llama"], "--l2-weight", "0")
    model.train()
    lm = model.decoder.lm.module
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    sample = first_batch(task, split="train", max_sentences=8)
    loss, _, log = criterion(model, sample)
    assert "ast_loss" in log
    loss.backward()
    assert not lm.training and all(not p.requires_grad and p.grad is None for p in lm.parameters())
    asr_grad = sum(float(p.grad.abs().sum()) for p in model.encoder.asr.encoder.parameters() if p.grad is not None)
    assert asr_grad > 0, "the translation loss through the frozen LM must reach the ASR encoder"
    torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    for k, v in lm.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen LM tensor {k} changed"
    assert not any(k.startswith(("decoder.lm.", "encoder.lm_source.")) for k in model.state_dict())


def _cli_train(cascade, user_dir, lm_dir, save, *extra):
    return run(["fairseq_cli.train", str(cascade["s2t"]), "--user-dir", user_dir,
                "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
                "--train-subset", "train", "--valid-subset", "dev", "--arch", "exporter", "--criterion", "exporter",
                "--asr-checkpoint", str(cascade["asr"]), "--lm-checkpoint", str(lm_dir),
                "--onebest-max-len", "12", "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "4000",
                "--max-update", "3", "--save-dir", str(save), "--no-epoch-checkpoints", "--no-progress-bar",
                "--num-workers", "0", "--seed", "1", *extra])


@pytest.mark.parametrize("arch", ARCHS)
def test_stages_and_generate_through_the_fairseq_clis(cascade, user_dir, lms, arch, tmp_path):
    _cli_train(cascade, user_dir, lms[arch], tmp_path / "stage1", "--freeze-asr", "--ast-weight", "0")
    stage1 = tmp_path / "stage1" / "checkpoint_last.pt"
    _cli_train(cascade, user_dir, lms[arch], tmp_path / "stage2", "--finetune-from-model", str(stage1),
               "--asr-weight", "0.3", "--eval-bleu")
    saved = torch.load(tmp_path / "stage2" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert not any(".lm." in k or "lm_source" in k for k in saved["model"])  # the LM stays in its directory
    assert saved["cfg"]["model"]["lm_fingerprint"]
    run(["fairseq_cli.generate", str(cascade["s2t"]), "--user-dir", user_dir, "--task", "speech_to_text_exporter",
         "--config-yaml", "config_st.yaml", "--gen-subset", "test", "--path", str(tmp_path / "stage2" / "checkpoint_last.pt"),
         "--beam", "3", "--max-tokens", "4000", "--onebest-max-len", "12", "--max-len-b", "6",
         "--results-path", str(tmp_path / "gen")])
    records = read_generate_output(tmp_path / "gen" / "generate-test.txt").values()
    n_test = len(cascade["s2t"].joinpath("test.tsv").read_text().splitlines()) - 1
    assert len(records) == n_test and all(r.asr is not None for r in records)
    words = set(tiny_lm.word_tokenizer(False).get_vocab())
    # H- lines are the LM tokenizer's text: its words, never fairseq's ids or special symbols
    assert all(set(r.detok_hypothesis.split()) <= words - {"<unk>", "<s>", "</s>"} for r in records)


def test_generate_refuses_another_lm(cascade, user_dir, lms, tmp_path):
    _cli_train(cascade, user_dir, lms["llama"], tmp_path / "stage1", "--freeze-asr", "--ast-weight", "0",
               "--max-update", "1")
    other = tiny_lm.build(tmp_path / "other", "llama", seed=1)
    with pytest.raises(AssertionError, match="fingerprint"):
        run(["fairseq_cli.generate", str(cascade["s2t"]), "--user-dir", user_dir, "--task", "speech_to_text_exporter",
             "--config-yaml", "config_st.yaml", "--gen-subset", "test", "--path",
             str(tmp_path / "stage1" / "checkpoint_last.pt"), "--onebest-max-len", "12", "--max-tokens", "4000",
             "--model-overrides", str({"lm_checkpoint": str(other)})])


def test_a_rebuild_refuses_another_tokenizer_configuration(cascade, lms, tmp_path):
    """The checkpoint records the tokenizer's configuration: the same LM whose tokenizer then
    gets a chat template, or another end token, is refused on rebuild, naming what differs."""
    import json
    import shutil

    from fairseq import tasks

    from fairseq_exporter.models.causal_lm import LMError

    lm = tmp_path / "lm"
    shutil.copytree(lms["llama"], lm)
    cfg, _, _, _ = _build(cascade, lm)
    assert json.loads(cfg.model.tokenizer_fingerprint)["eos"]
    tasks.setup_task(cfg.task).build_model(cfg.model)  # unchanged: rebuilds
    config_file = lm / "tokenizer_config.json"
    kept = config_file.read_text()
    for change, named in ((lambda c: c.update(chat_template="{{ messages[0]['content'] }}"), "chat template"),
                          (lambda c: c.update(eos_token="<unk>"), "eos: </s>=")):
        config = json.loads(kept)
        change(config)
        config_file.write_text(json.dumps(config))
        with pytest.raises(LMError, match=f"tokenizer is not configured as when .* {named}"):
            tasks.setup_task(cfg.task).build_model(cfg.model)
    config_file.write_text(kept)


@pytest.mark.parametrize("case", ["no-slot", "two-slots", "missing-dir", "not-causal", "missing-symbol", "both"])
def test_bad_lm_setups_are_named(cascade, lms, tmp_path, case):
    from fairseq_exporter.models.causal_lm import LMError

    lm, extra, expected = lms["llama"], (), None
    if case == "no-slot":
        extra, expected = ("--lm-prompt", "Translate:"), r"exactly once \(found 0\)"
    elif case == "two-slots":
        extra, expected = ("--lm-prompt", "{src} {src}"), r"exactly once \(found 2\)"
    elif case == "missing-dir":
        lm, expected = tmp_path / "nowhere", "no such directory"
    elif case == "not-causal":
        from transformers import BertConfig, BertModel

        lm = tmp_path / "bert"
        BertModel(BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16)).save_pretrained(lm)
        tiny_lm.word_tokenizer(True).save_pretrained(lm)
        expected = "'bert' causal LM .*: not a causal LM checkpoint"
    elif case == "missing-symbol":  # an LM whose tokenizer lacks one of the ASR's words
        lm = tmp_path / "short"
        tiny_lm.build(lm, "llama")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(lm / "tokenizer.json"))
        vocab = tok.get_vocab()
        vocab["rivers"] = vocab.pop("river")
        from tokenizers import models

        tok.model = models.WordLevel(vocab, unk_token="<unk>")
        tok.save(str(lm / "tokenizer.json"))
        expected = "symbol 'river' .* is not a token of the LM tokenizer"
    else:
        extra, expected = ("--mt-checkpoint", str(cascade["mt"])), "the text model is one or the other"
    with pytest.raises((LMError, ValueError, FileNotFoundError), match=expected):
        _build(cascade, lm, "--lm-prompt", tiny_lm.PROMPT, *extra)


@pytest.mark.parametrize("coupling,source", [("exporter", "decoder"), ("posterior", "ctc"), ("reference", "ctc")])
def test_every_coupling_and_source_trains_through_the_lm(cascade, lms, coupling, source):
    """The LM back-end takes what the MT back-end takes: both exporter sources, posterior
    coupling (the ASR's posterior times the LM's rows of the ASR symbols), the reference."""
    _, task, model, criterion = _build(cascade, lms["gpt2"], "--coupling", coupling, "--exporter-source", source,
                                       "--asr-weight", "0.3")
    model.train()
    loss, _, log = criterion(model, first_batch(task, split="train", max_sentences=4))
    loss.backward()
    assert torch.isfinite(loss) and "ast_loss" in log and ("l2_sum" in log) == (coupling != "reference")
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.asr.parameters())


def test_lm_keeps_its_dtype_and_fingerprint_under_casts(lms, monkeypatch):
    """fairseq's --fp16/--bf16 cast the whole model: the LM stays in --lm-dtype (RoPE
    frequencies included); the same LM loaded in bfloat16 has the float32 load's fingerprint,
    another LM has not."""
    from fairseq_exporter.models.causal_lm import FrozenExternal, load_causal_lm, weights_fingerprint

    lm = load_causal_lm(str(lms["llama"]), "float32")
    holder = torch.nn.Module()
    holder.lm = FrozenExternal(lm)
    holder.half()
    assert {t.dtype for t in [*lm.parameters(), *lm.buffers()]} == {torch.float32}
    assert weights_fingerprint(load_causal_lm(str(lms["llama"]), "bfloat16")) == weights_fingerprint(lm)
    assert weights_fingerprint(load_causal_lm(str(lms["gpt2"]))) != weights_fingerprint(lm)
    # a rank's LM is read straight onto its device (transformers' device_map), in --lm-dtype
    from transformers import AutoModelForCausalLM

    read, asked = AutoModelForCausalLM.from_pretrained, {}
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: asked.update(k) or read(*a, **k))
    placed = load_causal_lm(str(lms["llama"]), "bfloat16", torch.device("cpu"))
    assert asked["device_map"] == {"": torch.device("cpu")} and asked["dtype"] == torch.bfloat16
    assert {p.dtype for p in placed.parameters()} == {torch.bfloat16}
    assert weights_fingerprint(placed) == weights_fingerprint(lm)


def test_the_lm_rows_are_built_once_and_recovery_finds_them(cascade, lms):
    """The recovery metric's table (the LM rows of the ASR symbols, and their norms) is built
    once, not per step; exported vectors equal to those rows are recovered as their tokens."""
    _, task, model, criterion = _build(cascade, lms["llama"], "--ast-weight", "0")
    source = model.encoder.lm_source
    first = source.search_table()
    assert source.search_table()[0] is first[0]
    tokens = torch.arange(4, len(task.transcript_dictionary))
    fed = model.encoder.fed(tokens)
    specials = task.transcript_dictionary
    # no text for fairseq's specials: an ASR <unk> would be end-of-text to a GPT-2 tokenizer (unk == eos)
    assert not model.encoder.fed(torch.tensor([specials.unk(), specials.eos(), specials.pad(), specials.bos()])).any()
    found = model.encoder.nearest_tokens(model.encoder.embedding_rows(tokens[fed]))
    assert torch.equal(found, tokens[fed])
    # the criterion's recovery: the search's answer, each symbol's separation searched once
    rows = model.encoder.embedding_rows(tokens[fed])
    noisy = rows + torch.randn(rows.shape, generator=torch.Generator().manual_seed(0)) * rows.std()
    for vectors in (rows, noisy, torch.zeros_like(rows)):
        assert torch.equal(model.encoder.recovered(vectors, tokens[fed]),
                           model.encoder.nearest_tokens(vectors).eq(tokens[fed]))
    separation = source._separation[1]
    assert separation[tokens[fed]].isfinite().all() and separation.isnan().sum() == len(separation) - fed.sum()
    model.train()
    criterion(model, first_batch(task, split="train", max_sentences=4))
    assert source.search_table()[0] is first[0]


def test_ddp_leaves_the_frozen_lm_out(cascade, lms, tmp_path):
    """torch DDP (gloo, one process) neither broadcasts nor buckets the LM's tensors; the
    exporter's parameters it does."""
    import torch.distributed as dist

    _, _, model, _ = _build(cascade, lms["llama"])
    lm_names = {"decoder.lm.module." + n for n, _ in model.decoder.lm.module.named_parameters()}
    assert lm_names <= set(model._ddp_params_and_buffers_to_ignore)
    assert not any(n.startswith("encoder.exporter.") for n in model._ddp_params_and_buffers_to_ignore)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        assert lm_names <= ddp.parameters_to_ignore
        kept = {id(p) for p in ddp._module_parameters}  # what DDP syncs and buckets
        assert not kept & {id(p) for p in model.decoder.lm.module.parameters()}
        assert {id(p) for p in model.encoder.exporter.parameters()} <= kept
    finally:
        dist.destroy_process_group()


def test_vocab_exporter_on_an_lm_keeps_no_copy_of_its_table_and_starts_at_the_onebest(cascade, lms):
    """--exporter-type vocab on an LM mixes the LM's own rows (frozen, never in a checkpoint)
    plus a trainable rank-R correction that starts at zero: no V x D copy of the table, the
    exported vectors start nearest the 1-best's own rows, and the correction gets gradient.
    Its default rank on an LM is written into the config; an MT's vocab exporter refuses a rank."""
    cfg, task, model, criterion = _build(cascade, lms["llama"], "--exporter-type", "vocab",
                                         "--exporter-table-rank", "8")
    exporter = model.encoder.exporter
    n_symbols, dim = model.encoder.lm_source.table().shape
    shapes = {n: tuple(p.shape) for n, p in exporter.named_parameters()}
    assert "table" not in shapes and shapes["table_down"] == (n_symbols, 8) and shapes["table_up"] == (8, dim)
    saved = {k for k in model.state_dict() if k.startswith("encoder.exporter.")}
    assert {"encoder.exporter.table_down", "encoder.exporter.table_up"} <= saved
    assert not [k for k in saved if "table" in k and k.split(".")[-1] not in ("table_down", "table_up")]
    model.eval()
    sample = first_batch(task)
    with torch.no_grad():
        out = model.encoder(**sample["net_input"])
    tokens = out["recognition"].onebest.tokens
    fed = model.encoder.fed(tokens)
    assert fed.sum() > 10 and torch.equal(model.encoder.nearest_tokens(out["exported"][fed]), tokens[fed])
    model.train()
    loss, _, _ = criterion(model, first_batch(task, split="train", max_sentences=4))
    loss.backward()
    assert exporter.table_down.grad.abs().sum() > 0 and exporter.table_up.grad is not None

    default_cfg, _, default, _ = _build(cascade, lms["llama"], "--exporter-type", "vocab")
    assert default_cfg.model.exporter_table_rank == 64 and default.encoder.exporter.table_down.shape[1] == 64
    with pytest.raises(ValueError, match="--exporter-table-rank 8: .*--lm-checkpoint"):
        build(cascade, "--exporter-type", "vocab", "--exporter-table-rank", "8")


@pytest.mark.parametrize("arch", ARCHS)
def test_lm_gradient_checkpointing_recomputes_the_layers_and_changes_nothing(cascade, lms, arch):
    """--lm-gradient-checkpointing: the stage-2 loss and the ASR's and exporter's gradients
    through the frozen LM are those without it, while each LM layer runs twice per step (the
    backward recomputes it); the LM's table stays without gradient (its V x D rows would
    otherwise grow one in the vocab exporter's mixing); only the layers' own training flags are set (GPT-2's config has
    dropout: any dropout on would change the loss); generation is unchanged."""
    runs = {}
    for checkpointing in (False, True):
        _, task, model, criterion = _build(cascade, lms[arch], "--l2-weight", "0",
                                           *(["--lm-gradient-checkpointing"] if checkpointing else []))
        model.train()
        lm = model.decoder.lm.module
        layers = [m for m in lm.modules() if isinstance(m, transformers.modeling_layers.GradientCheckpointingLayer)]
        training = {name for name, m in lm.named_modules() if m.training}
        assert training == ({name for name, m in lm.named_modules() if m in layers} if checkpointing else set())
        # the frozen table's lookups carry no gradient of their own (transformers' input hook is off)
        assert not model.encoder.lm_source.table().requires_grad
        assert not lm.get_input_embeddings()(torch.tensor([[1, 2]])).requires_grad
        calls = []  # the layers' inner modules start in the forward, and again in a recompute
        hooks = [child.register_forward_pre_hook(lambda *_: calls.append(1)) for m in layers for child in m.children()]
        torch.manual_seed(1)
        loss, _, log = criterion(model, first_batch(task, split="train", max_sentences=4))
        loss.backward()
        assert "ast_loss" in log
        forward_calls = len(calls)
        model.eval()
        sample = first_batch(task)
        with torch.no_grad():
            recognition = model.encoder.recognize(**sample["net_input"])
        calls.clear()
        hypos = _generate(task, model, sample, 2, recognition)
        for hook in hooks:
            hook.remove()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs[checkpointing] = loss.detach(), grads, forward_calls, len(calls), hypos
    loss, grads, calls, gen_calls, hypos = runs[False]
    ck_loss, ck_grads, ck_calls, ck_gen_calls, ck_hypos = runs[True]
    assert calls > 0 and ck_calls == 2 * calls, "the backward must recompute every LM layer once"
    assert torch.equal(ck_loss, loss)
    assert grads.keys() == ck_grads.keys()
    assert any(n.startswith("encoder.asr.encoder.") for n in grads)
    assert any(n.startswith("encoder.exporter.") for n in grads)
    assert not any(".lm." in n for n in grads)
    for name, grad in grads.items():
        assert torch.allclose(ck_grads[name], grad, rtol=1e-5, atol=1e-7), name
    assert ck_gen_calls == gen_calls  # no grad: no recompute, the cache still used
    for h, ck in zip(hypos, ck_hypos):
        assert torch.equal(ck[0]["tokens"], h[0]["tokens"])
        assert torch.equal(ck[0]["positional_scores"], h[0]["positional_scores"])


def test_lm_gradient_checkpointing_refuses_what_it_cannot_keep_in_eval_mode(cascade, lms, monkeypatch):
    """An LM class without gradient checkpointing is named; so is a layer whose own code reads
    self.training (OPT's and Falcon's layers apply dropout themselves: checkpointing them would
    need them in training mode); and the MT back-end has no LM to checkpoint."""
    from transformers.models.falcon.modeling_falcon import FalconDecoderLayer
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer
    from transformers.models.opt.modeling_opt import OPTDecoderLayer

    from fairseq_exporter.models.causal_lm import LMError, _reads_training, checkpoint_lm_layers, load_causal_lm

    assert _reads_training(LlamaDecoderLayer) is None and _reads_training(GPT2Block) is None
    assert _reads_training(OPTDecoderLayer) == "OPTDecoderLayer reads self.training"
    assert _reads_training(FalconDecoderLayer) == "FalconDecoderLayer reads self.training"

    class DroppingBlock(GPT2Block):
        def forward(self, hidden_states, *args, **kwargs):
            out = GPT2Block.forward(self, hidden_states, *args, **kwargs)
            return torch.nn.functional.dropout(out, 0.1, training=self.training)

    lm = load_causal_lm(str(lms["gpt2"]))
    for block in lm.transformer.h:
        block.__class__ = DroppingBlock
    with pytest.raises(LMError, match=r"--lm-gradient-checkpointing: the 'gpt2' LM's layer DroppingBlock reads"):
        checkpoint_lm_layers(lm)
    assert not any(block.gradient_checkpointing for block in lm.transformer.h)

    monkeypatch.setattr(transformers.LlamaForCausalLM, "supports_gradient_checkpointing", False)
    with pytest.raises(LMError, match="--lm-gradient-checkpointing: .*'llama' LM .*does not support"):
        _build(cascade, lms["llama"], "--lm-gradient-checkpointing")
    with pytest.raises(ValueError, match="--lm-gradient-checkpointing .*--mt-checkpoint"):
        build(cascade, "--lm-gradient-checkpointing")


def test_the_lm_fingerprint_is_its_files_whatever_the_lm_dtype(cascade, lms):
    """The fingerprint a checkpoint keeps is of the LM's safetensors files as stored, so an
    exporter trained on a float32 load generates on a float16 one (a float16 load rounds the
    values otherwise than a bfloat16 one); the loaded-weights form checkpoints from before
    hold is still taken; another LM is refused."""
    from fairseq_exporter.models.causal_lm import LMError, files_fingerprint, load_causal_lm, weights_fingerprint

    cfg, _, _, _ = _build(cascade, lms["llama"])
    found = cfg.model.lm_fingerprint
    assert found == files_fingerprint(str(lms["llama"])) and found.startswith("files:")
    assert found != files_fingerprint(str(lms["gpt2"]))
    loaded = load_causal_lm(str(lms["llama"]))
    assert weights_fingerprint(load_causal_lm(str(lms["llama"]), "float16")) != weights_fingerprint(loaded)
    _build(cascade, lms["llama"], "--lm-dtype", "float16", "--lm-fingerprint", found)
    _build(cascade, lms["llama"], "--lm-dtype", "bfloat16", "--lm-fingerprint", weights_fingerprint(loaded))
    with pytest.raises(LMError, match="are not those of the LM this exporter was trained with"):
        _build(cascade, lms["gpt2"], "--lm-fingerprint", found)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_prompt_is_read_once_per_utterance_not_per_beam(cascade, lms, beam):
    """The LM's forward passes of a generate: beam search reads all but the last prompt
    position once, at the batch's size, then one position per step for batch x beam rows;
    greedy reads the prompt once and makes no pass after the search (its scores are read as
    it goes)."""
    task, model, _, sample, recognition = _setup(cascade, lms["llama"])
    lm = model.decoder.lm.module
    seen = []

    def record(module, args, kwargs):
        x = kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else kwargs.get("input_ids")
        seen.append(tuple(x.shape[:2]))

    handle = lm.register_forward_pre_hook(record, with_kwargs=True)
    try:
        _generate(task, model, sample, beam, recognition)
    finally:
        handle.remove()
    batch, width = len(sample["id"]), model.decoder.prompts(recognition.onebest.tokens).ids.size(1)
    rows = batch * beam
    steps = list(itertools.takewhile(lambda shape: shape == (rows, 1), seen[1:]))
    after = seen[1 + len(steps):]  # beam search: the scoring pass over prompt + answer, in chunks
    assert seen[0] == (batch, width - 1 if beam > 1 else width) and steps, seen[:3]
    if beam > 1:
        assert sum(n for n, _ in after) == batch and all(length > width for _, length in after), after
    else:
        assert not after, after
