"""Instruct LMs prompted through their chat template (--lm-chat), on three chat families
(tests/chat_lms.py: Llama 3.1 Instruct's template on the real Llama 3 tokenizer, Qwen 2.5's
ChatML on a byte-level BPE, Gemma 2's on a sentencepiece-style BPE) with tiny random Llamas and
an ASR trained on each tokenizer's pieces. The reference is built by transformers alone:

1. --coupling onebest == ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)``
   then ``generate(do_sample=False)`` stopping at the ids of the LM's generation_config, token
   for token and as text, greedy and beam 4, answers with a line break inside included; with
   the exporter output := the LM's rows of the 1-best, the same;
2. targets are the translation as the template writes an assistant turn, up to and with its
   end of turn; a multi-line answer is one line of fairseq's output and read back whole;
3. fairseq-train and fairseq-generate with --lm-chat --lm-system-prompt; bad chat set-ups
   are named."""

import functools
from argparse import Namespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

import chat_lms  # noqa: E402
import piece_cascade  # noqa: E402
from exporter_setup import build, first_batch  # noqa: E402
from tiny_cascade import run  # noqa: E402

from fairseq_exporter.data.lm_pieces import transcript_ids  # noqa: E402
from fairseq_exporter.generate_output import from_one_line, one_line, read_generate_output  # noqa: E402
from fairseq_exporter.models.coupling import Recognition  # noqa: E402
from fairseq_exporter.models.onebest import OneBest  # noqa: E402

MESSAGE = "Translate to German: {src}"
# the CLI runs, the messages and the options: on the ChatML family alone (its module fixture reused)
ONE_FAMILY = pytest.mark.parametrize("family", ["chatml"], indirect=True)
MAX_NEW = 10


@pytest.fixture(scope="module", params=chat_lms.FAMILIES)
def family(request, tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp(request.param)
    pieces = piece_cascade.build(root, chat_lms.tokenizer_dir(request.param, root), asr_updates=10)
    stops = chat_lms.stop_ids(request.param, AutoTokenizer.from_pretrained(pieces["lm"], local_files_only=True))
    chat_lms.make_chatty(pieces["lm"], request.param, MESSAGE)
    chat_lms.set_stops(pieces["lm"], stops)
    return dict(pieces, name=request.param, stops=stops)


def _model(family, coupling, *extra):
    torch.manual_seed(0)
    _, task, model, _ = build(family, "--coupling", coupling, "--onebest-max-len", "30",
                              text_model=("--lm-checkpoint", str(family["lm"]), "--lm-prompt", MESSAGE,
                                          "--lm-chat", *extra))
    model.eval()
    return task, model


@functools.lru_cache(maxsize=None)
def _lm(lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True).eval(),
            AutoTokenizer.from_pretrained(lm_dir, local_files_only=True))


def _ids(encoded):
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def users_chat_cascade(lm_dir, transcript, beam, system=None, max_new=MAX_NEW):
    """(answer ids through the stop, answer text): apply_chat_template, then generate() with
    the LM's own stop ids (its generation_config), as a user runs an instruct LM."""
    lm, tokenizer = _lm(lm_dir)
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": MESSAGE.format(src=transcript)})
    ids = torch.tensor([_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True))])
    stops = lm.generation_config.eos_token_id
    with torch.no_grad():
        out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=beam,
                          early_stopping=True, max_new_tokens=max_new, min_new_tokens=1,
                          pad_token_id=tokenizer.pad_token_id or stops[0])
    answer = out[0, ids.size(1):].tolist()
    for i, t in enumerate(answer):
        if t in stops:
            answer = answer[:i + 1]
            break
    text = tokenizer.decode([t for t in answer if t not in stops], skip_special_tokens=True).strip()
    return answer, text


def _generate(task, model, sample, tokens, beam):
    args = Namespace(beam=beam, nbest=1, max_len_a=0, max_len_b=MAX_NEW, min_len=1, lenpen=1.0)
    generator = task.build_generator([model], args)
    net_input = dict(sample["net_input"], recognition=Recognition(None, OneBest(tokens=tokens)))
    return generator.generate([model], {**sample, "net_input": net_input})


def _reference_pieces(task, sample):
    """The reference transcripts' pieces as a 1-best (B x L, </s> after each)."""
    src = task.transcript_dictionary
    rows = [[t for t in row if t not in (src.pad(), src.eos())] for row in sample["net_input"]["src_txt_tokens"].tolist()]
    out = torch.full((len(rows), max(map(len, rows)) + 1), src.pad(), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row) + 1] = torch.tensor(row + [src.eos()])
    return out


@pytest.mark.parametrize("beam", [1, 4])
def test_onebest_and_exporter_rows_are_the_users_chat_cascade(family, beam):
    task, plain = _model(family, "onebest")
    _, coupled = _model(family, "exporter")
    coupled.encoder.export = lambda rec: coupled.encoder.embedding_rows(rec.onebest.tokens)
    sample = first_batch(task, max_sentences=8)
    onebests = [_reference_pieces(task, sample)]
    if beam == 1:  # and the ASR's own 1-best (the beam runs on the reference's pieces: time)
        with torch.no_grad():
            onebests.append(plain.encoder.recognize(**sample["net_input"]).onebest.tokens)
    _, tokenizer = _lm(str(family["lm"]))
    texts, answers = [], []
    for onebest in onebests:
        prompts = plain.decoder.prompts(onebest).prompts
        for row, ids in enumerate(onebest.tolist()):
            messages = [{"role": "user", "content": MESSAGE.format(src=task._detokenize_source(ids))}]
            assert prompts[row].ids == _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        for model in (plain, coupled):
            hypos = _generate(task, model, sample, onebest, beam)
            for row, ids in enumerate(onebest.tolist()):
                transcript = task._detokenize_source(ids)
                answer, text = users_chat_cascade(str(family["lm"]), transcript, beam)
                assert hypos[row][0]["tokens"].tolist() == answer, (family["name"], row, transcript)
                assert task.target_dictionary.string(hypos[row][0]["tokens"]) == one_line(text)
                texts.append(text)
                answers.append(tuple(answer))
    assert any("\n" in t.strip() for t in texts), "some answers hold a line break inside"
    assert any(a[-1] in family["stops"] for a in answers), "some answers end at the end of turn"
    assert len(set(answers)) > 2, "the answers depend on the transcript"


def test_targets_are_the_assistant_turn_and_answers_print_on_one_line(family):
    task, plain = _model(family, "onebest")
    lm_dict = task.target_dictionary
    _, tokenizer = _lm(str(family["lm"]))
    translation = "Der Hund sieht.\nDie Katze läuft."
    target = lm_dict.encode_line(translation).tolist()
    assert target[-1] in family["stops"] and not any(t in family["stops"] for t in target[:-1])
    # the target is what the chat template writes after its generation prompt, through the end of turn
    messages = [{"role": "user", "content": MESSAGE.format(src="The dog sees.")}]
    asked = _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    whole = _ids(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": translation}]))
    assert whole[:len(asked)] == asked and whole[len(asked):len(asked) + len(target)] == target
    printed = lm_dict.string(torch.tensor(target))
    assert "\n" not in printed and from_one_line(printed) == translation


def test_the_system_message_is_the_templates(family):
    """--lm-system-prompt: the prompt is apply_chat_template([system, user]); Gemma's template
    has no system role, and says so by name."""
    from fairseq_exporter.models.lm_prompt import PromptError

    system = "You translate English into German."
    if family["name"] == "gemma":
        with pytest.raises(PromptError, match="refuses the messages with --lm-system-prompt.*System role not supported"):
            _model(family, "onebest", "--lm-system-prompt", system)
        return
    task, model = _model(family, "onebest", "--lm-system-prompt", system)
    _, tokenizer = _lm(str(family["lm"]))
    prompt = model.decoder.template.build(transcript_ids(tokenizer, "A dog sees."))
    messages = [{"role": "system", "content": system}, {"role": "user", "content": MESSAGE.format(src="A dog sees.")}]
    assert prompt.ids == _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


@ONE_FAMILY
def test_train_and_generate_through_the_fairseq_clis(family, user_dir, tmp_path):
    """fairseq-train with --lm-chat --lm-system-prompt, then fairseq-generate on its
    checkpoint: the 1-best cascade it prints (multi-line answers on one line each) is the
    user's chat cascade on the printed transcripts, and the scorer reads it."""
    system = "You translate English into German."
    save = tmp_path / "stage1"
    train = run(["fairseq_cli.train", str(family["s2t"]), "--user-dir", user_dir, "--task", "speech_to_text_exporter",
         "--config-yaml", "config_st.yaml", "--train-subset", "train", "--valid-subset", "dev", "--arch", "exporter",
         "--criterion", "exporter", "--asr-checkpoint", str(family["asr"]), "--lm-checkpoint", str(family["lm"]),
         "--lm-chat", "--lm-system-prompt", system, "--lm-prompt", MESSAGE, "--freeze-asr", "--ast-weight", "0",
         "--onebest-max-len", "30", "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "4000",
         "--max-update", "2", "--save-dir", str(save), "--no-epoch-checkpoints", "--no-progress-bar",
         "--num-workers", "0", "--seed", "1", "--data-buffer-size", "0", "--eval-bleu"])
    valid = [line for line in (train.stdout + train.stderr).splitlines() if "valid on 'dev' subset" in line]
    assert valid and "| bleu " in valid[-1] and "| wer " in valid[-1], valid  # --eval-bleu's dev BLEU and WER
    saved = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["cfg"]["model"]
    assert saved["lm_chat"] and saved["lm_system_prompt"] == system
    run(["fairseq_cli.generate", str(family["s2t"]), "--user-dir", user_dir, "--task", "speech_to_text_exporter",
         "--config-yaml", "config_st.yaml", "--gen-subset", "test", "--path", str(save / "checkpoint_last.pt"),
         "--coupling", "onebest", "--beam", "2", "--max-tokens", "4000", "--max-len-b", str(MAX_NEW),
         "--results-path", str(tmp_path / "gen"), "--data-buffer-size", "0"])
    records = read_generate_output(tmp_path / "gen" / "generate-test.txt")
    assert records and all(r.asr is not None for r in records.values())
    for r in records.values():
        _, text = users_chat_cascade(str(family["lm"]), r.asr, 2, system)
        assert r.detok_hypothesis == text, r.asr
    assert any("\n" in r.detok_hypothesis for r in records.values()), "a multi-line answer read back whole"


@ONE_FAMILY
def test_bad_chat_setups_are_named(family, tmp_path):
    """--lm-system-prompt without --lm-chat; a tokenizer with no chat template; an LM whose
    generation_config then lists other end-of-turn ids than the checkpoint's."""
    import json
    import shutil

    from fairseq import tasks

    from fairseq_exporter.models.causal_lm import LMError
    from fairseq_exporter.models.lm_prompt import PromptError

    with pytest.raises(LMError, match="--lm-system-prompt .* give it with --lm-chat"):
        build(family, text_model=("--lm-checkpoint", str(family["lm"]), "--lm-system-prompt", "Be brief."))
    lm = tmp_path / "lm"
    shutil.copytree(family["lm"], lm)
    cfg, _, _, _ = build(family, text_model=("--lm-checkpoint", str(lm), "--lm-prompt", MESSAGE, "--lm-chat"))
    generation = json.loads((lm / "generation_config.json").read_text())
    chat_lms.set_stops(lm, generation["eos_token_id"][:1])
    with pytest.raises(LMError, match="generation_config eos_token_id"):
        tasks.setup_task(cfg.task).build_model(cfg.model)
    config = json.loads((lm / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (lm / "tokenizer_config.json").write_text(json.dumps(config))
    for name in ("chat_template.jinja", "chat_template.json"):
        (lm / name).unlink(missing_ok=True)
    with pytest.raises(PromptError, match="has no chat template"):
        build(family, text_model=("--lm-checkpoint", str(lm), "--lm-prompt", MESSAGE, "--lm-chat"))


@ONE_FAMILY
def test_prompt_fit_reads_the_chat_prompt(family, tmp_path, capsys):
    """fairseq-exporter-lm-vocab --prompt-fit --lm-chat: transcripts in the LM's pieces, counted
    in the chat template's prompt (the ASR writes the pieces the prompt holds)."""
    from fairseq_exporter.cli import lm_vocab

    _, tokenizer = _lm(str(family["lm"]))
    lines = [" ".join(tokenizer.convert_ids_to_tokens(transcript_ids(tokenizer, t)))
             for t in ("A dog sees a cat.", "The old man sees the dog.")]
    (tmp_path / "test.pieces").write_text("\n".join(lines) + "\n")
    lm_vocab.main([str(family["lm"]), "--prompt-fit", str(tmp_path / "test.pieces"), "--lm-chat",
                   "--lm-prompt", MESSAGE, "--lm-system-prompt", "Translate."])
    assert capsys.readouterr().out.startswith("2 transcripts")
    with pytest.raises(SystemExit, match="give it with --lm-chat"):
        lm_vocab.main([str(family["lm"]), "--prompt-fit", str(tmp_path / "test.pieces"), "--lm-system-prompt", "x"])


@ONE_FAMILY
def test_template_variables_reach_the_template(family, tmp_path):
    """--lm-chat-template-kwargs: a Qwen 3-style template with enable_thinking false closes an
    empty think block in the generation prompt; the prompt is apply_chat_template(...,
    enable_thinking=False), the targets the answer and the end of turn, the 1-best cascade the
    user's. Without it, the answer the template writes starts with the think block."""
    import json
    import shutil

    from fairseq_exporter.models.causal_lm import LMError

    lm = tmp_path / "lm"
    shutil.copytree(family["lm"], lm)
    config = json.loads((lm / "tokenizer_config.json").read_text())
    config["chat_template"] = chat_lms.QWEN3_TEMPLATE
    (lm / "tokenizer_config.json").write_text(json.dumps(config))
    (lm / "chat_template.jinja").unlink(missing_ok=True)
    qwen3 = dict(family, lm=lm)
    _lm.cache_clear()
    _, tokenizer = _lm(str(lm))
    no_thinking = '{"enable_thinking": false}'
    task, model = _model(qwen3, "onebest", "--lm-chat-template-kwargs", no_thinking)
    messages = [{"role": "user", "content": MESSAGE.format(src="A dog sees.")}]
    prompt = model.decoder.template.build(transcript_ids(tokenizer, "A dog sees."))
    assert prompt.ids == _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False))
    assert tokenizer.decode(prompt.ids).endswith("<think>\n\n</think>\n\n")
    target = task.target_dictionary.encode_line("Der Hund sieht.").tolist()
    assert tokenizer.decode(target) == "Der Hund sieht.<|im_end|>"
    sample = first_batch(task, max_sentences=4)
    tokens = _reference_pieces(task, sample)
    hypos = _generate(task, model, sample, tokens, 1)
    for row, ids in enumerate(tokens.tolist()):
        text = MESSAGE.format(src=task._detokenize_source(ids))
        ids_in = torch.tensor([_ids(tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                                  add_generation_prompt=True, enable_thinking=False))])
        lm_model = _lm(str(lm))[0]
        out = lm_model.generate(ids_in, attention_mask=torch.ones_like(ids_in), do_sample=False, max_new_tokens=MAX_NEW,
                                min_new_tokens=1, pad_token_id=tokenizer.pad_token_id)[0, ids_in.size(1):].tolist()
        stop = next((i for i, t in enumerate(out) if t in family["stops"]), None)
        assert hypos[row][0]["tokens"].tolist() == (out if stop is None else out[:stop + 1])
    task, model = _model(qwen3, "onebest")  # thinking on: the template writes the think block into the answer
    assert model.decoder.template.answer_head == "<think>\n\n</think>\n\n"
    with pytest.raises(LMError, match="--lm-chat-template-kwargs is for the LM's chat template"):
        build(qwen3, text_model=("--lm-checkpoint", str(lm), "--lm-chat-template-kwargs", no_thinking))
    with pytest.raises(ValueError, match="--lm-chat-template-kwargs: not a JSON object"):
        _model(qwen3, "onebest", "--lm-chat-template-kwargs", "enable_thinking=false")
    _lm.cache_clear()
