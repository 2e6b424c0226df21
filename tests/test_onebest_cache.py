"""--onebest-cache: with the ASR frozen, the cached 1-best and token states give the
losses the ASR would give, and a cache that does not fit is an error."""

import numpy as np
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


def _fill(cascade, tmp_path, directory, *extra, steps=1):
    torch.manual_seed(0)
    _, task, model, criterion = build(cascade, *STAGE1, *extra)
    sample = first_batch(task, "train", max_sentences=8)
    model.use_onebest_cache(str(directory))
    losses = _losses(task, model, criterion, sample, steps=steps)
    return task, model, criterion, sample, losses


def test_a_shard_cut_short_by_a_crash_is_recomputed_not_read(cascade, tmp_path, monkeypatch):
    """The shard's index is written last: arrays without their index (a crash between
    the two), or arrays shorter than their index says, are left out and recomputed."""
    from fairseq_exporter.models import onebest_cache

    directory = tmp_path / "c"
    task, model, criterion, sample, plain = _fill(cascade, tmp_path, directory)
    real_write = onebest_cache._write_atomically

    def crash_before_the_index(path, write):
        if path.suffix == ".json" and path.name.startswith("shard-"):
            raise KeyboardInterrupt("killed")
        real_write(path, write)

    monkeypatch.setattr(onebest_cache, "_write_atomically", crash_before_the_index)
    with pytest.raises(KeyboardInterrupt):
        model.onebest_cache.flush()
    monkeypatch.setattr(onebest_cache, "_write_atomically", real_write)
    model.onebest_cache._pending = {}  # the crashed process's buffer is gone
    assert list(directory.glob("shard-*.states.npy")) and not list(directory.glob("shard-*.json"))

    model.onebest_cache = None  # a resumed run: nothing readable, so the ASR runs again
    assert _losses(task, model, criterion, sample, steps=1)[0] == pytest.approx(plain[0], rel=1e-5, abs=1e-6)
    assert model.onebest_cache.misses == len(sample["id"]) and len(model.onebest_cache) == len(sample["id"])
    model.onebest_cache.flush()

    # a states file shorter than its index names (a disk that lost the tail)
    states = next(p for p in directory.glob("shard-*.states.npy")
                  if p.with_name(p.name.replace(".states.npy", ".json")).exists())
    arr = np.load(states)
    np.save(states, arr[:-1])
    model.onebest_cache = None
    assert _losses(task, model, criterion, sample, steps=1)[0] == pytest.approx(plain[0], rel=1e-5, abs=1e-6)
    assert model.onebest_cache.misses == len(sample["id"])


def test_cached_rows_are_read_from_memory_mapped_shards(cascade, tmp_path, monkeypatch):
    """What stays in memory is the index and a buffer of FLUSH_EVERY utterances: the
    states of flushed shards are read from disk (np.memmap) when a batch needs them."""
    from fairseq_exporter.models import onebest_cache

    monkeypatch.setattr(onebest_cache, "FLUSH_EVERY", 3)
    task, model, criterion, sample, plain = _fill(cascade, tmp_path, tmp_path / "c")
    cache = model.onebest_cache
    assert len(cache._pending) < 3 and len(cache.shards) == len(sample["id"]) // 3
    assert all(isinstance(shard.states, np.memmap) for shard in cache.shards)
    cache.flush()
    model.onebest_cache = None
    model.encoder.search = None  # would fail if called
    assert _losses(task, model, criterion, sample, steps=1)[0] == pytest.approx(plain[0], rel=1e-5, abs=1e-6)


def test_float16_states_are_a_cache_of_their_own_and_close(cascade, tmp_path):
    """--onebest-cache-dtype float16: half the bytes, losses within float16 rounding; a
    directory written in one dtype is refused in the other."""
    torch.manual_seed(0)
    _, task, model, criterion = build(cascade, *STAGE1, "--onebest-cache", str(tmp_path / "c"),
                                      "--onebest-cache-dtype", "float16")
    sample = first_batch(task, "train", max_sentences=8)
    plain = _losses(task, model, criterion, sample, steps=2)
    assert plain[1] == pytest.approx(plain[0], rel=1e-2, abs=1e-3)  # step 2 read float16 states
    model.onebest_cache.flush()
    assert {np.load(p).dtype for p in (tmp_path / "c").glob("shard-*.states.npy")} == {np.dtype(np.float16)}
    model.use_onebest_cache(str(tmp_path / "c"))  # float32 on the same directory
    model.onebest_cache = None
    with pytest.raises(StaleOneBestCache, match="state_dtype: cached 'float16', now 'float32'"):
        _losses(task, model, criterion, sample, steps=1)


def test_a_cache_of_the_old_format_is_refused(cascade, tmp_path):
    import json

    directory = tmp_path / "c"
    _fill(cascade, tmp_path, directory)
    meta = json.loads((directory / "cache.json").read_text())
    (directory / "cache.json").write_text(json.dumps(dict(meta, format=2)))
    _, task, model, criterion = build(cascade, *STAGE1, "--onebest-cache", str(directory))
    sample = first_batch(task, "train", max_sentences=4)
    with pytest.raises(StaleOneBestCache, match="format: cached 2, now 3"):
        _losses(task, model, criterion, sample, steps=1)
