"""What a toy run's bits depend on, and where two runs' bits part.

A CPU run of the study is a pure function of the seed, the code and the arithmetic: the same
kernels in the same order give the same bits. What chooses the kernels is the machine: the
CPU's instruction set (ATen, oneDNN and MKL each dispatch on it at run time), the library
versions and the thread count (how a reduction is split). So the recipe

- pins the code path where the libraries allow (`code_path_pins`: ATen's kernels, oneDNN's
  ISA and MKL's conditional numerical reproducibility, all at AVX2), so that an AVX-512 machine
  takes the same path as an AVX2 one;
- records, per invocation, the machine facts the bits depend on (`machine_facts`, into
  WORK/machine.jsonl);
- hashes each stage's product (`product_hashes`: corpus, each trained model's weights), which
  the report writes into results.json beside the generate outputs' hashes, so that
  `python -m fairseq_exporter.toy.provenance compare A/results.json B/results.json` names the
  first stage whose bits part and the machine facts that differ.

    python -m fairseq_exporter.toy.provenance pins                 # shell exports (run.sh)
    python -m fairseq_exporter.toy.provenance record WORK --stages 0-7
    python -m fairseq_exporter.toy.provenance compare OURS.json PUBLISHED.json
"""

import argparse
import hashlib
import json
import os
import platform
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

# The code-path pins, each the documented knob of its library (values: the AVX2 path).
PINS = OrderedDict([
    ("ATEN_CPU_CAPABILITY", "avx2"),   # torch's own vectorized kernels (DispatchStub)
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),    # oneDNN's convolutions and matmuls (JIT ISA ceiling)
    ("MKL_CBWR", "AVX2"),              # MKL's BLAS: conditional numerical reproducibility
])
PIN_ISA = ("avx2", "fma")  # the CPU flags the pinned path needs

# The stages' products in pipeline order (a work-dir path relative to WORK): the first one
# that differs between two runs is where their bits part.
CORPUS_PRODUCTS = OrderedDict([
    ("corpus:text", ("data/text", "*")),
    ("corpus:features", ("data/st", "fbank80.zip")),
    ("corpus:vocabularies", ("data/st", "*.txt")),
    ("corpus:sentencepiece", ("data/st", "*.model")),
    ("corpus:manifests", ("data/st", "*.tsv")),
])
# stage 9's dictionary of the LM's pieces sits beside the corpus's (it is the LM's product, hashed as "lm")
NOT_CORPUS = {"dict.lm.txt"}
MODEL_PRODUCTS = ("mt", "asr", "stage1", "stage2", "control", "mt-adapted", "stage3-exporter", "stage3",
                  "stage1-decoder", "stage2-decoder", "posterior", "lm", "asr-lm", "stage1-lm", "stage2-lm",
                  "control-lm", "exporter-only", "mt-text-only", "text-only-exporter", "exporter-only-lm",
                  "lm-text-only", "text-only-exporter-lm", "hf-mt", "stage1-hf-mt", "stage2-hf-mt", "control-hf-mt",
                  "stage1-tf", "stage2-tf", "exporter-only-tf")


def cpu_flags() -> Tuple[str, set]:
    """(the CPU's model name, its instruction-set flags) from /proc/cpuinfo where there is one"""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return (model.group(1).strip() if model else platform.machine(),
            set(flags.group(1).split()) if flags else set())


def cpu_model_numbers() -> str:
    """family/model/stepping and the cache sizes: a hypervisor may show every CPU generation as
    one model name, and libraries choose their blocking from the caches"""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    numbers = [re.search(rf"^{key}\s*:\s*(\S+)", text, re.M) for key in ("cpu family", "model", "stepping")]
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        caches.append(f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''} {size}")
    return "/".join(m.group(1) if m else "?" for m in numbers) + (f", {' '.join(caches)}" if caches else "")


def code_path_pins(environ=None) -> Tuple[Dict[str, str], str]:
    """(the pins to export, why): every pin the CPU can take and the user has not set"""
    environ = os.environ if environ is None else environ
    _, flags = cpu_flags()
    if not all(flag in flags for flag in PIN_ISA):
        return {}, (f"not pinned: this CPU lacks {'/'.join(PIN_ISA)} (the libraries' defaults; "
                    "bits compare only with the same CPU kind)")
    pins = OrderedDict((key, value) for key, value in PINS.items() if key not in environ)
    kept = [f"{key}={environ[key]}" for key in PINS if key in environ]
    why = "pinned to the AVX2 path: " + " ".join(f"{k}={v}" for k, v in pins.items())
    return pins, why + (f" (yours kept: {' '.join(kept)})" if kept else "")


def _library_versions(config: str) -> Tuple[str, str]:
    mkl = re.search(r"Math Kernel Library Version ([^\s]+)", config)
    onednn = re.search(r"MKL-DNN (v[^\s]+)", config)
    return (mkl.group(1) if mkl else "none"), (onednn.group(1) if onednn else "none")


def _version(package: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def machine_facts() -> "OrderedDict[str, object]":
    """What the bits depend on, as this process sees it (run it in the recipe's environment)."""
    import torch

    model, flags = cpu_flags()
    mkl, onednn = _library_versions(torch.__config__.show())
    isa = [flag for flag in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if flag in flags]
    return OrderedDict([
        ("cpu", model), ("cpu_numbers", cpu_model_numbers()), ("cores", os.cpu_count()),
        ("isa", " ".join(isa) or "unknown"),
        ("aten_kernels", torch.backends.cpu.get_cpu_capability()),
        ("threads", torch.get_num_threads()),
        ("pins", " ".join(f"{key}={os.environ[key]}" for key in PINS if key in os.environ) or "none"),
        ("python", platform.python_version()), ("torch", torch.__version__), ("mkl", mkl), ("onednn", onednn),
        ("numpy", _version("numpy")),
        ("fairseq", _version("ve-fairseq") if _version("fairseq") == "none" else _version("fairseq")),
        ("sentencepiece", _version("sentencepiece")), ("kaldi_native_fbank", _version("kaldi-native-fbank")),
        ("espeakng_loader", _version("espeakng-loader")), ("transformers", _version("transformers")),
    ])


def record(work: Path, stages: str):
    """Append this invocation's machine facts to WORK/machine.jsonl."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "machine.jsonl", "a") as out:
        out.write(json.dumps({"stages": stages, **machine_facts()}) + "\n")


def read_machines(work: Path) -> List[dict]:
    """The distinct machine facts the work dir's invocations ran under, each with its stages."""
    path = work / "machine.jsonl"
    if not path.exists():
        return []
    machines: List[dict] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"error: {path}, line {number}: not JSON ({error})")
        stages = entry.pop("stages", "?")
        for known in machines:
            if known["facts"] == entry:
                known["stages"].append(stages)
                break
        else:
            machines.append({"stages": [stages], "facts": entry})
    return machines


def _files_sha256(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def weights_sha256(checkpoint: Path) -> str:
    """sha256 of a checkpoint's weights (names, dtypes, shapes, values): fairseq's checkpoints
    also hold timings and paths, so the file's own hash would differ between equal runs."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes() if tensor.dtype != torch.bfloat16
                      else tensor.detach().float().numpy().tobytes())
    return digest.hexdigest()


def sentencepiece_sha256(paths) -> str:
    """sha256 of sentencepiece models' pieces, scores and types: a .model file also holds the
    paths it was trained from, which differ between equal runs in other work dirs."""
    import sentencepiece as spm

    digest = hashlib.sha256()
    for path in sorted(paths):
        model = spm.SentencePieceProcessor(model_file=str(path))
        digest.update(path.name.encode() + b"\0")
        for i in range(model.get_piece_size()):
            kind = "c" if model.is_control(i) else "u" if model.is_unknown(i) else "b" if model.is_byte(i) else "n"
            digest.update(f"{model.id_to_piece(i)}\t{model.get_score(i)!r}\t{kind}\n".encode())
    return digest.hexdigest()


def product_hashes(work: Path) -> "OrderedDict[str, str]":
    """sha256 of each stage's product present in WORK, in pipeline order."""
    hashes = OrderedDict()
    for name, (folder, pattern) in CORPUS_PRODUCTS.items():
        files = [p for p in (work / folder).glob(pattern) if p.is_file() and p.name not in NOT_CORPUS]
        if files:
            hashes[name] = sentencepiece_sha256(files) if pattern == "*.model" else _files_sha256(files)
    for name in MODEL_PRODUCTS:
        folder = work / name
        if (folder / "checkpoint_best.pt").is_file():
            hashes[name] = weights_sha256(folder / "checkpoint_best.pt")
        elif name in ("lm", "lm-text-only", "hf-mt") and list(folder.glob("*.safetensors")):
            hashes[name] = _files_sha256(folder.glob("*.safetensors"))
    return hashes


def compare(ours: dict, published: dict, names=("this run", "the published run")) -> Tuple[bool, List[str]]:
    """(the same bits?, report lines) for two results.json: the products in pipeline order,
    then the generate outputs, then the machine facts that differ."""
    lines, first = [], None
    for kind in ("product_sha256", "generate_sha256"):
        mine, theirs = ours.get(kind) or {}, published.get(kind) or {}
        if not theirs:
            lines.append(f"{kind}: {names[1]} holds none")
            continue
        lines.append(f"{kind}:")
        for name in list(theirs) + [n for n in mine if n not in theirs]:
            if name not in mine or name not in theirs:
                state = "only in " + (names[1] if name in theirs else names[0])
            elif mine[name] == theirs[name]:
                state = "same"
            else:
                state = "differs"
                first = first or name
            lines.append(f"  {name:<22} {state}")
    same = first is None and bool(published.get("generate_sha256"))
    head = [f"the same bits as {names[1]}" if same else
            f"the bits part at: {first}" if first else "nothing to compare"]
    facts_mine = {k: v for m in ours.get("machine", []) for k, v in m["facts"].items()}
    facts_theirs = {k: v for m in published.get("machine", []) for k, v in m["facts"].items()}
    differ = [f"  {key}: {facts_mine.get(key, '?')} in {names[0]}, {facts_theirs.get(key, '?')} in {names[1]}"
              for key in sorted(set(facts_mine) | set(facts_theirs)) if facts_mine.get(key) != facts_theirs.get(key)]
    if differ:
        lines += ["machine facts that differ:"] + differ
    return same, head + lines


def main(argv: Optional[list] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pins", help="print the shell exports that pin the CPU code path (and why, on stderr)")
    rec = sub.add_parser("record", help="append this machine's facts to WORK/machine.jsonl")
    rec.add_argument("work", type=Path)
    rec.add_argument("--stages", required=True)
    cmp_ = sub.add_parser("compare", help="where two runs' bits part (exit 1 if they do)")
    cmp_.add_argument("ours", type=Path)
    cmp_.add_argument("published", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pins":
        pins, why = code_path_pins()
        print(why, file=sys.stderr)
        for key, value in pins.items():
            print(f"export {key}={value}")
    elif args.command == "record":
        record(args.work, args.stages)
    else:
        results = []
        for path in (args.ours, args.published):
            try:
                results.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError) as error:
                raise SystemExit(f"error: {path}: {error}")
        same, lines = compare(*results, names=(str(args.ours), str(args.published)))
        print("\n".join(lines))
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
