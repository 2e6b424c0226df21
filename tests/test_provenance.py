"""What a toy run's bits depend on: the CPU code-path pins, the machine facts each invocation
records, the stage-by-stage product hashes and the comparison that names where two runs part."""

import json

import pytest
import torch

from fairseq_exporter.toy import provenance


def test_the_pins_are_the_avx2_path_and_a_users_own_value_is_kept(monkeypatch):
    monkeypatch.setattr(provenance, "cpu_flags", lambda: ("some CPU", {"avx2", "fma", "avx512f"}))
    pins, why = provenance.code_path_pins({})
    assert pins == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
    pins, why = provenance.code_path_pins({"MKL_CBWR": "COMPATIBLE"})
    assert "MKL_CBWR" not in pins and "yours kept: MKL_CBWR=COMPATIBLE" in why


def test_a_cpu_without_avx2_is_not_pinned_and_says_so(monkeypatch):
    # forcing ATen's AVX2 kernels on a CPU without AVX2 would stop on an illegal instruction
    monkeypatch.setattr(provenance, "cpu_flags", lambda: ("Apple M2", set()))
    pins, why = provenance.code_path_pins({})
    assert pins == {} and "not pinned: this CPU lacks avx2/fma" in why


def test_pins_prints_shell_exports(capsys, monkeypatch):
    monkeypatch.setattr(provenance, "cpu_flags", lambda: ("some CPU", {"avx2", "fma"}))
    for key in provenance.PINS:
        monkeypatch.delenv(key, raising=False)
    provenance.main(["pins"])
    out = capsys.readouterr()
    assert out.out.splitlines() == ["export ATEN_CPU_CAPABILITY=avx2", "export ONEDNN_MAX_CPU_ISA=AVX2",
                                    "export MKL_CBWR=AVX2"]
    assert "pinned to the AVX2 path" in out.err


def test_machine_facts_name_what_the_bits_depend_on(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    facts = provenance.machine_facts()
    for key in ("cpu", "isa", "aten_kernels", "threads", "pins", "torch", "mkl", "onednn", "numpy", "fairseq"):
        assert facts[key] not in (None, ""), key
    assert facts["torch"] == torch.__version__ and facts["threads"] == torch.get_num_threads()
    assert facts["pins"] == "MKL_CBWR=AVX2"


def test_record_groups_the_invocations_by_machine(tmp_path, monkeypatch):
    facts = iter([{"cpu": "A", "threads": 2}, {"cpu": "A", "threads": 2}, {"cpu": "A", "threads": 1}])
    monkeypatch.setattr(provenance, "machine_facts", lambda: next(facts))
    for stages in ("0-7", "9-9", "10-10"):
        provenance.record(tmp_path, stages)
    assert provenance.read_machines(tmp_path) == [
        {"stages": ["0-7", "9-9"], "facts": {"cpu": "A", "threads": 2}},
        {"stages": ["10-10"], "facts": {"cpu": "A", "threads": 1}}]
    (tmp_path / "machine.jsonl").write_text('{"cpu": "A"}\nnot json\n')
    with pytest.raises(SystemExit, match=r"machine.jsonl, line 2: not JSON"):
        provenance.read_machines(tmp_path)


def _checkpoint(path, value, extra_state=None):
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.full((2, 3), value), "b": torch.zeros(3)},
                "extra_state": extra_state or {}}, path / "checkpoint_best.pt")


def test_product_hashes_are_of_the_weights_in_pipeline_order(tmp_path):
    (tmp_path / "data/st").mkdir(parents=True)
    (tmp_path / "data/text").mkdir(parents=True)
    (tmp_path / "data/st/fbank80.zip").write_bytes(b"features")
    (tmp_path / "data/st/train.tsv").write_text("id\taudio\n")
    (tmp_path / "data/text/general.train.en").write_text("a sentence\n")
    _checkpoint(tmp_path / "stage1", 0.5)
    _checkpoint(tmp_path / "mt", 1.0, {"wall": 12.3})
    hashes = provenance.product_hashes(tmp_path)
    assert list(hashes) == ["corpus:text", "corpus:features", "corpus:manifests", "mt", "stage1"]
    # a checkpoint's timings do not count, its weights do
    _checkpoint(tmp_path / "mt", 1.0, {"wall": 99.9})
    assert provenance.product_hashes(tmp_path)["mt"] == hashes["mt"]
    _checkpoint(tmp_path / "mt", 1.0 + 2 ** -20)
    assert provenance.product_hashes(tmp_path)["mt"] != hashes["mt"]


def test_compare_names_the_first_stage_whose_bits_part_and_the_facts_that_differ(tmp_path, capsys):
    published = {"product_sha256": {"corpus:features": "f", "mt": "m", "asr": "a"},
                 "generate_sha256": {"onebest": "o", "stage9": "x"},
                 "machine": [{"stages": ["0-7"], "facts": {"cpu": "EPYC", "threads": 2}}]}
    ours = {"product_sha256": {"corpus:features": "f", "mt": "M", "asr": "A"},
            "generate_sha256": {"onebest": "O"},
            "machine": [{"stages": ["0-7"], "facts": {"cpu": "Xeon", "threads": 2}}]}
    same, lines = provenance.compare(ours, published)
    assert not same and lines[0] == "the bits part at: mt"
    assert any(line.split() == ["asr", "differs"] for line in lines)
    assert any(line.split() == ["stage9", "only", "in", "the", "published", "run"] for line in lines)
    assert "  cpu: Xeon in this run, EPYC in the published run" in lines and not any("threads" in line for line in lines)
    assert provenance.compare(published, published)[0]
    # the command: exit 1 where the bits part
    paths = []
    for name, results in (("ours", ours), ("published", published)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(results))
    with pytest.raises(SystemExit) as stop:
        provenance.main(["compare", *map(str, paths)])
    assert stop.value.code == 1 and "the bits part at: mt" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no/such.json"):
        provenance.main(["compare", str(paths[0]), "no/such.json"])
