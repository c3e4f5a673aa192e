#!/usr/bin/env python3
"""The peer: the prototype's path (HF transformers + PyTorch, forward hooks at the links) on the
same model, text and protocol as splitbench, printing perplexity and processed tokens/s.

    python3 scripts/peer_hf.py --model DIR --data wiki.test.raw --first-k-tokens 16384 \
        --max-length 2048 --stride 512 --batch-size 2 --nodes 4 --dtype bf16 --device cuda \
        --variants none,int8-token,int8-token@host

Each variant is a codec, optionally @host: `none`, or `int8-token` (symmetric absmax per token,
f32 scale, rounding half away from zero as splitbench's intq does) run in torch ops on the GPU,
or with @host on a copy in host memory (torch's CPU threads) that is copied back. The model is
loaded once; each variant prints one JSON line. Needs torch and transformers.

With --generate it times greedy decoding instead (`splitbench bench --decode` runs it): for each
JSON line {"prompts": [[ids]], "new_tokens": G} on stdin, `generate` of the prompts batched
(equal lengths, no padding; KV cache; no end-of-sequence stop) after one untimed warm-up, and
one JSON line with ms per step (between consecutive steps' logits, the prefill excluded) and
the continuations.
"""

import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import transformers
from tokenizers import Tokenizer


def wikitext_text(raw):
    """The prototype's text: rows of the Hub dataset ("\\n"-terminated lines, " \\n" -> ""),
    joined with "\\n\\n" -- as splitbench's data.rs rebuilds it."""
    rows = [("" if line in (" \n", " ") else line) for line in raw.splitlines(keepends=True)]
    return "\n\n".join(rows)


def windows(n, max_length, stride):
    """splitbench's protocol.rs: [begin, end) and how many trailing labels each scores."""
    out, prev_end, begin = [], 0, 0
    while begin < n:
        end = min(begin + max_length, n)
        out.append((begin, end, end - prev_end))
        prev_end = end
        if end == n:
            break
        begin += stride
    return out


def prototype_links(layers, nodes):
    """Where a hidden state crosses a link in the prototype's split (plan.rs default_split):
    node 0 holds the embedding, the head and the first and last halves of its share, nodes 1..
    the middle. "embed" when the embedding's output crosses (node 0 holds no early layer, as
    with fewer than two layers per node), then the layers whose output crosses."""
    base, rem = divmod(layers, nodes)
    early = base // 2
    owner = [0] * early
    for node in range(1, nodes):
        owner += [node] * (base + (1 if node - 1 < rem else 0))
    owner += [0] * (base - early)
    embed = ["embed"] if owner[0] != 0 else []
    return embed + [i for i in range(layers - 1) if owner[i] != owner[i + 1]]


def int8_token(x):
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True) / 127.0
    inv = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    v = xf * inv
    # Rust's f32::round: ties away from zero (torch.round sends them to even).
    t = torch.trunc(v)
    r = torch.where((v - t).abs() >= 0.5, t + torch.sign(v), t)
    q = torch.clamp(r, -127, 127).to(torch.int8)
    return (q.float() * scale).to(x.dtype)


def load_model(args, dtype, device):
    """The model of --gguf (dequantized to dtype by transformers) or --model, on device."""
    if args.gguf:
        folder, name = os.path.split(os.path.abspath(args.gguf))
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=dtype
        )
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    return model.to(device).eval()


def time_generation(model, device):
    """For each request on stdin, greedy `generate` of its prompts; one JSON line each."""

    # A class here, not at the top: importing the script (plan.rs's test) needs no transformers.
    class StepClock(transformers.LogitsProcessor):
        """Records when each step's logits are ready (the device synchronized first)."""

        def __init__(self, device):
            self.device, self.times = device, []

        def __call__(self, input_ids, scores):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            return scores

    # Generate exactly new_tokens steps: no end-of-sequence token stops or masks a row.
    model.generation_config.eos_token_id = None
    warmed = False
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        ids = torch.tensor(request["prompts"], dtype=torch.long, device=device)
        new = request["new_tokens"]

        def run(clock):
            with torch.inference_mode():
                return model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                    do_sample=False, use_cache=True, pad_token_id=0,
                    logits_processor=transformers.LogitsProcessorList([clock]),
                )

        if not warmed:
            run(StepClock(device))
            warmed = True
        clock = StepClock(device)
        out = run(clock)
        steps = len(clock.times) - 1
        print(json.dumps({
            "peer": "transformers",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "ms_per_step": (clock.times[-1] - clock.times[0]) / steps * 1e3 if steps > 0 else None,
            "continuations": out[:, ids.shape[1]:].tolist(),
        }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a Hugging Face model folder (config, safetensors, tokenizer)")
    src.add_argument("--gguf", help="a GGUF file, dequantized by transformers (needs `gguf`)")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--data", help="the raw text file")
    text.add_argument("--ids", help="token ids as `splitbench tokenize --out` writes them")
    p.add_argument("--format", choices=["wikitext", "text"], default="wikitext")
    p.add_argument("--first-k-tokens", type=int, default=0)
    p.add_argument("--add-special-tokens", type=int, default=1)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--stride", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--split-after", default="", help="comma-separated layers, instead of --nodes")
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="bf16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
    p.add_argument("--variants", default="none", help="comma-separated: none, int8-token[@host]")
    p.add_argument("--generate", action="store_true", help="time greedy decoding (prompts on stdin)")
    args = p.parse_args()
    if not (args.generate or args.data or args.ids):
        p.error("one of --data, --ids or --generate is required")
    variants = []
    for v in args.variants.split(","):
        codec, _, path = v.partition("@")
        if codec not in ("none", "int8-token") or path not in ("", "host"):
            p.error(f"unknown variant `{v}`: use none, int8-token or int8-token@host")
        variants.append((codec, path or "device"))

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    device = torch.device(args.device)
    if args.generate:
        time_generation(load_model(args, dtype, device), device)
        return
    if args.ids:
        with open(args.ids, encoding="utf-8") as f:
            ids = json.load(f)["ids"]
    else:
        tokenizer = Tokenizer.from_file(f"{args.model}/tokenizer.json")
        raw = open(args.data, encoding="utf-8").read()
        text = wikitext_text(raw) if args.format == "wikitext" else raw
        ids = tokenizer.encode(text, add_special_tokens=bool(args.add_special_tokens)).ids
    if args.first_k_tokens:
        ids = ids[: args.first_k_tokens]

    model = load_model(args, dtype, device)
    layers = model.model.layers
    links = (
        [int(s) for s in args.split_after.split(",") if s]
        if args.split_after
        else prototype_links(len(layers), args.nodes)
    )

    state = {"codec": "none", "path": "device", "codec_s": 0.0}

    def transmit(h):
        if state["codec"] == "none":
            return h
        start = time.perf_counter()
        if state["path"] == "host":
            out = int8_token(h.cpu()).to(h.device)
        else:
            out = int8_token(h)
        if device.type == "cuda":
            torch.cuda.synchronize()
        state["codec_s"] += time.perf_counter() - start
        return out

    def hook(_module, _inputs, output):
        if isinstance(output, tuple):
            return (transmit(output[0]),) + tuple(output[1:])
        return transmit(output)

    for i in links:
        (model.model.embed_tokens if i == "embed" else layers[i]).register_forward_hook(hook)

    wins = windows(len(ids), args.max_length, args.stride)
    batches = [wins[i : i + args.batch_size] for i in range(0, len(wins), args.batch_size)]
    for codec, path in variants:
        state.update(codec=codec, path=path, codec_s=0.0)
        result = evaluate(model, ids, batches, device, state)
        result.update(
            peer="transformers",
            torch=torch.__version__,
            transformers=transformers.__version__,
            codec=codec,
            path=path if codec != "none" else "none",
            links=links,
            tokens=len(ids),
            threads=torch.get_num_threads(),
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
        print(json.dumps(result), flush=True)


def evaluate(model, ids, batches, device, state):
    """Perplexity over every batch; processed tokens/s over all but the first (warm-up)."""
    total_nll, scored, processed, timed_s = 0.0, 0, 0, 0.0
    with torch.inference_mode():
        for k, batch in enumerate(batches):
            padded = max(e - b for b, e, _ in batch)
            input_ids = torch.zeros((len(batch), padded), dtype=torch.long)
            mask = torch.zeros((len(batch), padded), dtype=torch.long)
            for row, (b, e, _) in enumerate(batch):
                input_ids[row, : e - b] = torch.tensor(ids[b:e])
                mask[row, : e - b] = 1
            if device.type == "cuda":
                torch.cuda.synchronize()
            if k == 1:
                state["codec_s"] = 0.0
            start = time.perf_counter()
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            for row, (b, e, trg_len) in enumerate(batch):
                length = e - b
                first = max(length - min(trg_len, length), 1)
                if length - first <= 0:
                    continue
                lp = torch.log_softmax(logits[row, first - 1 : length - 1].float(), dim=-1)
                targets = input_ids[row, first:length].to(device)
                total_nll -= lp.gather(1, targets.unsqueeze(1)).sum().item()
                scored += length - first
            if device.type == "cuda":
                torch.cuda.synchronize()
            if k > 0:
                timed_s += time.perf_counter() - start
                processed += len(batch) * padded
    return {
        "scored": scored,
        "ppl": math.exp(total_nll / max(scored, 1)),
        "timed_batches": max(len(batches) - 1, 0),
        "processed_tokens": processed,
        "seconds": timed_s,
        "tokens_per_s": processed / timed_s if timed_s > 0 else None,
        "codec_share": state["codec_s"] / timed_s if timed_s > 0 else None,
    }


if __name__ == "__main__":
    main()
