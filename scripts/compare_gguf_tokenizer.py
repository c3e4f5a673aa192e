"""Compare splitbench's GGUF tokenizer with Hugging Face transformers' on the same text.

    splitbench tokenize EXPERIMENT.toml --out ids.json
    python scripts/compare_gguf_tokenizer.py MODEL.gguf TEXT_FILE ids.json [--format wikitext|text]

Needs `pip install "transformers==4.46.3" gguf "numpy<2"`, and no torch: transformers'
`AutoTokenizer.from_pretrained(gguf_file=...)` insists on torch, so this reads the GGUF's
`tokenizer.*` metadata the way transformers' `load_gguf_checkpoint` does and hands it to the
same converter (`transformers.integrations.ggml.convert_gguf_tokenizer`) that AutoTokenizer
uses. Builds the text exactly as splitbench does (for wikitext: rows = lines, " \\n" -> "",
"\\n\\n".join(rows)), tokenizes it (with special tokens, as HF `tokenizer(text)`), and reports
the first difference, if any.
"""

import argparse
import json

from gguf import GGUFReader
from transformers.integrations.ggml import (
    GGUF_TOKENIZER_MAPPING,
    _gguf_parse_value,
    convert_gguf_tokenizer,
)


def transformers_tokenizer(path: str):
    reader = GGUFReader(path)
    arch = None
    params = {}
    for key, field in reader.fields.items():
        value = [_gguf_parse_value(field.parts[i], field.types) for i in field.data]
        if len(value) == 1:
            value = value[0]
        if key == "general.architecture":
            arch = value
        prefix, _, rest = key.partition(".")
        renamed = GGUF_TOKENIZER_MAPPING["tokenizer"].get(rest) if prefix == "tokenizer" else None
        if renamed:
            params[renamed] = value
    tokenizer, _ = convert_gguf_tokenizer(arch, params)
    return tokenizer


def wikitext_text(raw: str) -> str:
    rows = ["" if line in (" \n", " ") else line for line in raw.splitlines(keepends=True)]
    return "\n\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("text")
    ap.add_argument("ids")
    ap.add_argument("--format", default="wikitext", choices=["wikitext", "text"])
    ap.add_argument("--no-special-tokens", action="store_true")
    ap.add_argument(
        "--smollm-pre",
        action="store_true",
        help="use the Digits + ByteLevel pre-tokenizer that tokenizer.ggml.pre = smollm names "
        "(and SmolLM2's own tokenizer.json has); transformers' GGUF converter ignores that key",
    )
    args = ap.parse_args()
    raw = open(args.text, encoding="utf-8", newline="").read()
    text = wikitext_text(raw) if args.format == "wikitext" else raw
    tok = transformers_tokenizer(args.gguf)
    if args.smollm_pre:
        from tokenizers import pre_tokenizers

        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )
    theirs = tok.encode(text, add_special_tokens=not args.no_special_tokens).ids
    ours = json.load(open(args.ids))["ids"]
    print(f"transformers {len(theirs)} tokens, splitbench {len(ours)} tokens")
    n = min(len(ours), len(theirs))
    first = next((i for i in range(n) if ours[i] != theirs[i]), None)
    if first is None and len(ours) == len(theirs):
        print("identical")
        return
    i = first if first is not None else n
    print(f"first difference at token {i}: splitbench {ours[i:i+8]} transformers {theirs[i:i+8]}")
    raise SystemExit(1)


if __name__ == "__main__":
    main()
