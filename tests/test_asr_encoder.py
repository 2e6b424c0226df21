"""fairseq-exporter-asr-encoder: an ASR's speech encoder as fairseq's own
--load-pretrained-encoder-from loads it into an ASR on another dictionary."""

import argparse
import copy

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.models.speech_to_text.s2t_transformer import S2TTransformerEncoder

from fairseq_exporter.cli import asr_encoder


def test_the_encoder_loads_into_an_asr_on_another_dictionary(cascade, tmp_path):
    other = tmp_path / "dict.other.txt"  # the new ASR's pieces: more than the old ASR's dict.en.txt
    other.write_text((cascade["s2t"] / "dict.de.txt").read_text() + "".join(f"▁new{i} 1\n" for i in range(5)))
    out = tmp_path / "encoder.pt"
    asr_encoder.main([str(cascade["asr"]), "--dict", str(other), "--out", str(out), "--seed", "3"])
    source = torch.load(cascade["asr"], map_location="cpu", weights_only=False)
    args = argparse.Namespace(**vars(copy.deepcopy(source["cfg"]["model"])))
    args.tgt_dict_size = len(Dictionary.load(str(other)))
    assert args.tgt_dict_size != source["model"]["encoder.ctc_proj.weight"].shape[0]
    # what s2t_transformer's build_encoder does with --load-pretrained-encoder-from (strict)
    encoder = checkpoint_utils.load_pretrained_component_from_model(S2TTransformerEncoder(args), str(out))
    loaded = encoder.state_dict()
    kept = [k for k in loaded if not k.startswith("ctc_proj.")]
    assert kept and all(torch.equal(loaded[k], source["model"]["encoder." + k]) for k in kept)
    assert loaded["ctc_proj.weight"].shape == (args.tgt_dict_size, args.encoder_embed_dim)
    assert loaded["ctc_proj.weight"].abs().max() <= args.encoder_embed_dim ** -0.5  # nn.Linear's init range
    again = tmp_path / "again.pt"
    asr_encoder.main([str(cascade["asr"]), "--dict", str(other), "--out", str(again), "--seed", "3"])
    assert torch.equal(torch.load(again, weights_only=False)["model"]["encoder.ctc_proj.weight"],
                       torch.load(out, weights_only=False)["model"]["encoder.ctc_proj.weight"])


@pytest.mark.parametrize("fault", ["no dict", "no checkpoint", "the MT"])
def test_bad_input_is_named(cascade, tmp_path, fault):
    asr, dictionary = str(cascade["asr"]), str(cascade["s2t"] / "dict.de.txt")
    if fault == "no dict":
        dictionary = named = str(tmp_path / "dict.missing.txt")
    elif fault == "no checkpoint":
        asr = named = str(tmp_path / "missing.pt")
    else:
        asr = named = str(cascade["mt"])
    with pytest.raises(SystemExit) as stop:
        asr_encoder.main([asr, "--dict", dictionary, "--out", str(tmp_path / "out.pt")])
    assert named in str(stop.value) and not (tmp_path / "out.pt").exists()
