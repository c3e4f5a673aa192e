#!/usr/bin/env python3
"""Hugging Face transformers' decode speed on the GGUF that configs/smollm2-generate.toml runs,
for comparison with splitbench's `generation.compute_ms_per_step` (docs/results.md).

    pip install torch transformers gguf accelerate
    python3 scripts/decode_vs_hf.py ~/.cache/splitbench-models/SmolLM2-135M-Instruct.Q4_1.gguf

Greedy `generate` of 4 prompts of 64 random ids, 32 new tokens, f32 (the GGUF dequantized),
2 threads; the decode time is the whole call minus one prefill of the prompts.
"""
import sys
import time
from pathlib import Path

import torch
import transformers

torch.set_num_threads(2)
gguf = Path(sys.argv[1])
model = transformers.AutoModelForCausalLM.from_pretrained(
    gguf.parent, gguf_file=gguf.name, dtype=torch.float32
).eval()
ids = torch.randint(0, model.config.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for _ in range(3):
        start = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32,
                       min_new_tokens=32, do_sample=False, use_cache=True, pad_token_id=0)
        total = time.perf_counter() - start
        start = time.perf_counter()
        model(ids)
        prefill = time.perf_counter() - start
        step_ms = (total - prefill) / 31 * 1e3
        print(f"decode {step_ms:.1f} ms/step ({1e3 / step_ms:.1f} steps/s), prefill {prefill * 1e3:.0f} ms")
