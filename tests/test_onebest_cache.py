"""--onebest-cache: with the ASR frozen, the cached 1-best and token states give the
losses the ASR would give, and a cache that does not fit is an error."""

import pytest
import torch

from exporter_setup import build, first_batch
from fairseq_exporter.models.onebest_cache import StaleOneBestCache

STAGE1 = ("--freeze-asr", "--freeze-mt", "--exporter-dropout", "0")


def _losses(task, model, criterion, sample, steps=2):
    """Loss of ``steps`` train steps on the same batch, without optimizer updates."""
    out = []
    optimizer = type("NoOpt", (), {"backward": staticmethod(lambda loss: loss.backward())})()
    for step in range(steps):
        model.zero_grad()
        loss, _, log = task.train_step(sample, model, criterion, optimizer, step)
        grad = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
        out.append((float(loss), float(log["l2_sum"]), int(log["recovered"]), grad, int(log["onebest_truncated"])))
    return out


@pytest.mark.parametrize("extra", [(), ("--exporter-type", "transformer", "--ast-weight", "1")])
def test_cached_onebest_gives_the_losses_of_the_asr(cascade, tmp_path, extra):
    torch.manual_seed(0)
    _, task, model, criterion = build(cascade, *STAGE1, *extra)
    sample = first_batch(task, "train", max_sentences=8)
    plain = _losses(task, model, criterion, sample)

    model.use_onebest_cache(str(tmp_path / "c"))  # what --onebest-cache does when the model is built
    cached = _losses(task, model, criterion, sample)  # step 1 fills the cache, step 2 reads it
    assert model.onebest_cache.misses == len(sample["id"]) and model.onebest_cache.hits == len(sample["id"])
    for a, b in zip(plain, cached):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)

    model.onebest_cache.flush()
    model.onebest_cache = None  # a new run reads the shards back, without running the ASR search
    model.encoder.search = None  # would fail if called
    assert _losses(task, model, criterion, sample, steps=1)[0] == pytest.approx(plain[0], rel=1e-5, abs=1e-6)
    assert model.onebest_cache.misses == 0
    model.eval()  # validation and generation run the ASR: the cache serves training only
    with pytest.raises(TypeError, match="'NoneType' object is not callable"):  # the search
        model(**sample["net_input"])


def test_cache_refused_when_the_asr_trains(cascade, tmp_path):
    with pytest.raises(ValueError, match="--onebest-cache needs --freeze-asr"):
        build(cascade, "--freeze-mt", "--onebest-cache", str(tmp_path / "c"))


def test_cache_of_another_asr_or_search_is_an_error(cascade, tmp_path):
    _, task, model, criterion = build(cascade, *STAGE1, "--onebest-cache", str(tmp_path / "c"))
    sample = first_batch(task, "train", max_sentences=4)
    _losses(task, model, criterion, sample, steps=1)

    # other search options
    _, task, model, criterion = build(cascade, *STAGE1, "--onebest-cache", str(tmp_path / "c"),
                                      "--onebest-max-len", "7")
    task.load_dataset("train")
    with pytest.raises(StaleOneBestCache, match="onebest_max_len: cached 200, now 7"):
        _losses(task, model, criterion, sample, steps=1)

    # another ASR (same architecture, other weights)
    _, task, model, criterion = build(cascade, *STAGE1, "--onebest-cache", str(tmp_path / "c"))
    task.load_dataset("train")
    with torch.no_grad():
        next(model.encoder.asr.parameters()).add_(0.01)
    with pytest.raises(StaleOneBestCache, match="asr_parameters_sha256.*Delete"):
        _losses(task, model, criterion, sample, steps=1)


def test_cached_onebest_counts_cut_rows_as_the_search_does(cascade, tmp_path):
    """A 1-best cut to the MT's source positions is counted (onebest_truncated) by the
    cache as by the search: a row exactly as long as the MT takes is not cut."""
    torch.manual_seed(0)
    counts = []
    for positions in (4, 5, 6, 7, 8):
        state = torch.load(cascade["mt"])
        state["cfg"]["model"].max_source_positions = positions  # sinusoidal: same weights
        mt = tmp_path / f"mt{positions}.pt"
        torch.save(state, mt)
        _, task, model, criterion = build(cascade, *STAGE1, "--mt-checkpoint", str(mt))
        sample = first_batch(task, "train", max_sentences=8)
        lengths = model.encoder.recognize(**sample["net_input"]).onebest.tokens.ne(1).sum(1)
        plain = _losses(task, model, criterion, sample, steps=1)[0][-1]
        model.use_onebest_cache(str(tmp_path / f"c{positions}"))
        cached = [step[-1] for step in _losses(task, model, criterion, sample)]  # fill, then read
        assert cached == [plain, plain], positions
        counts.append((plain, int(lengths.eq(positions).sum())))
    assert any(0 < n < 8 for n, _ in counts), counts  # some rows cut, some not
    assert any(at_limit for _, at_limit in counts), counts  # and rows exactly at the limit
