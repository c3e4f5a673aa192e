#!/usr/bin/env python3
"""Feeds the same hidden states to the libraries the prototype called and to splitbench's
codecs, and prints, per codec and dtype, the largest difference of the decoded values and both
byte counts per token.

    python3 -m venv .venv && .venv/bin/pip install torch bitsandbytes hqq torchao safetensors numpy gguf transformers accelerate
    .venv/bin/python scripts/compare_codecs.py [--input H.safetensors] [--gguf SmolLM2.gguf]

Hidden states, in order of preference:
  --input H.safetensors   tensors [batch, tokens, hidden] or [tokens, hidden] (what
                          `splitbench capture` writes), in f32, f16 or bf16;
  --gguf FILE             SmolLM2-135M-Instruct (scripts/fetch-smollm2.sh), run with
                          transformers on the CPU: the residual stream entering links after
                          layers 7, 15 and 23 (the cut of configs/smollm2-gguf-codecs.toml)
                          for the first --tokens tokens of a fixed text. Token 0 carries the
                          massive activation (~22,500 in channel 507 at the links after
                          layers 15 and 23);
  otherwise               a synthetic stand-in (Gaussian bulk, a few channels in the hundreds,
                          ~24,000 in one channel at the first token), said in the output.
Each tensor is compared in f32, bf16 and f16.

splitbench's side runs through `splitbench codec-roundtrip --plugin --codec --params --input
--output`, which writes the decoded tensors under the input's names and the wire sizes in the
output's metadata key `wire_bytes` (JSON: name -> bytes).

Exit status 1 when a codec that must match exactly does not (more than one ulp of the model
dtype on any value) or when hqq leaves the tolerance stated in TOLERANCE_HQQ.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
PLUGINS = ["lut4", "intq", "cast", "hqq", "mx", "rotate", "blockmean"]

# --survey: every built-in codec family at its usual settings, error against bits per value.
SURVEY = [
    ("cast", "fp8-e4m3", {"scale": "per-token"}),
    ("intq", "int8-token", {}),
    ("intq", "intn-affine-token", {"bits": 8}),
    ("intq", "intn-affine-token", {"bits": 8, "entropy": "rans"}),
    ("mx", "mxfp8-e4m3", {}),
    ("mx", "mxfp6-e2m3", {}),
    ("mx", "mxfp6-e3m2", {}),
    ("intq", "intn-block", {"bits": 4}),
    ("intq", "intn-block", {"bits": 4, "entropy": "rans"}),
    ("intq", "intn-block-asym", {"bits": 4}),
    ("intq", "intn-affine-token", {"bits": 4}),
    ("rotate", "hadamard-intn", {"bits": 4}),
    ("rotate", "hadamard-intn", {"bits": 4, "block": 64}),
    ("lut4", "nf4", {}),
    ("lut4", "fp4", {}),
    ("hqq", "hqq", {"bits": 4}),
    ("mx", "mxfp4", {}),
    ("mx", "nvfp4", {}),
    ("hqq", "hqq", {"bits": 3}),
    ("intq", "intn-block", {"bits": 3}),
    ("rotate", "hadamard-intn", {"bits": 3, "block": 64}),
    ("hqq", "hqq", {"bits": 2}),
    ("intq", "intn-block", {"bits": 2}),
    ("blockmean", "block-mean", {}),
    ("blockmean", "block-mean", {"permute": "features"}),
    ("blockmean", "block-mean", {"token_block": 4, "feat_block": 4}),
    ("blockmean", "block-mean", {"model": "product"}),
]

ROUNDTRIP = [str(TARGET / "splitbench"), "codec-roundtrip"]

# hqq: see hqq_tolerance() for why it is not bit-exact.
TOLERANCE_HQQ = {"max_steps": 1.0, "max_code_flips": 0.005}

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

TEXT = (
    "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, "
    "and the tallest structure in Paris. Its base is square, measuring 125 metres (410 ft) on "
    "each side. During its construction, the Eiffel Tower surpassed the Washington Monument to "
    "become the tallest man-made structure in the world, a title it held for 41 years until "
    "the Chrysler Building in New York City was finished in 1930. It was the first structure "
    "to reach a height of 300 metres. Due to the addition of a broadcasting aerial at the top "
    "of the tower in 1957, it is now taller than the Chrysler Building by 5.2 metres (17 ft). "
    "Excluding transmitters, the Eiffel Tower is the second tallest free-standing structure in "
    "France after the Millau Viaduct."
)


# ---------------------------------------------------------------------------------------------
# Hidden states


def capture_smollm2(gguf: Path, tokens: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    ids = tok(TEXT, return_tensors="pt").input_ids[:, :tokens]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    # hidden_states[i] is the residual stream after layer i - 1: the input of a link after
    # layer L is hidden_states[L + 1]. Links after layers 7, 15, 23, as in
    # configs/smollm2-gguf-codecs.toml.
    return {f"after_layer_{layer}": hidden[layer + 1].contiguous() for layer in (7, 15, 23)}


def synthetic(tokens: int, hidden: int = 576) -> dict:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, tokens, hidden, generator=g) * torch.exp(
        0.5 * torch.randn(hidden, generator=g)
    )
    x[:, :, hidden * 13 // 100] += 300 + 100 * torch.rand(tokens, generator=g)
    x[:, :, hidden * 71 // 100] -= 150 + 50 * torch.rand(tokens, generator=g)
    x[:, 0, hidden * 13 // 100] = 24_000.0
    return {"synthetic": x}


def load_states(args) -> tuple:
    if args.input:
        out = {}
        with safe_open(args.input, "pt") as f:
            for name in f.keys():
                t = f.get_tensor(name).float()
                out[name] = t if t.dim() == 3 else t.reshape(1, -1, t.shape[-1])
        return out, f"{args.input}"
    gguf = Path(args.gguf) if args.gguf else None
    if gguf is None:
        for candidate in [
            REPO / "models/SmolLM2-135M-Instruct.Q4_1.gguf",
            Path.home() / ".cache/splitbench-models/SmolLM2-135M-Instruct.Q4_1.gguf",
        ]:
            if candidate.exists():
                gguf = candidate
                break
    if gguf is not None:
        try:
            states = capture_smollm2(gguf, args.tokens)
            return states, f"SmolLM2-135M-Instruct ({gguf.name}), {args.tokens} tokens"
        except Exception as e:  # noqa: BLE001 - any failure falls back, said below
            print(f"could not run {gguf} ({e}); using synthetic states", file=sys.stderr)
    return synthetic(args.tokens), "SYNTHETIC stand-in (no SmolLM2 GGUF found)"


# ---------------------------------------------------------------------------------------------
# The libraries, as the prototype called them. Each returns (decoded in x.dtype, bytes).


def lib_bnb(x, quant_type, block):
    import bitsandbytes.functional as F

    packed, state = F.quantize_4bit(x, blocksize=block, quant_type=quant_type)
    if x.shape[-1] % block == 0:
        y = F.dequantize_4bit(packed, state)
    else:
        # bitsandbytes 0.50's CPU dequantize kernel cuts blocks per row, unlike its quantize
        # (and its CUDA and pure-torch paths), which cut the flattened tensor: its own round
        # trip is wrong when hidden % block != 0. Its pure-torch dequantize is the reference.
        from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
        from bitsandbytes.backends.utils import _get_4bit_code

        dequantize = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)
        code = _get_4bit_code(quant_type, x.device)
        y = dequantize(packed.reshape(-1), state.absmax, code, block, x.shape, x.dtype)
    return y, packed.numel() * packed.element_size() + state.absmax.numel() * 4


def lib_affine_token(x, bits):
    from torchao.quantization.quant_primitives import (
        MappingType,
        choose_qparams_affine,
        dequantize_affine,
        quantize_affine,
    )

    block = (1,) * (x.dim() - 1) + (x.shape[-1],)
    target = torch.uint8 if bits == 8 else getattr(torch, f"uint{bits}")
    qmin, qmax = 0, 2**bits - 1
    scale, zero = choose_qparams_affine(
        x, MappingType.ASYMMETRIC, block, target, qmin, qmax, zero_point_dtype=torch.int16
    )
    q = quantize_affine(x, block, scale, zero, target, qmin, qmax)
    y = dequantize_affine(q, block, scale, zero, target, qmin, qmax, output_dtype=x.dtype)
    packed = (q.numel() * bits + 7) // 8
    return y, packed + scale.numel() * scale.element_size() + zero.numel() * 2


def lib_fp8_row(x, fmt):
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.quantize_.workflows.float8.float8_tensor import Float8Tensor

    t = Float8Tensor.from_hp(x, float8_dtype=fmt, granularity=PerRow())
    return t.dequantize(), t.qdata.numel() + t.scale.numel() * 4


def lib_fp8_cast(x, fmt):
    # A saturating cast: clamp to the format's largest finite value, then round to nearest.
    m = torch.finfo(fmt).max
    return x.float().clamp(-m, m).to(fmt).float().to(x.dtype), x.numel()


def lib_hqq(x, bits, group):
    from hqq.core.quantize import Quantizer

    kw = dict(nbits=bits, channel_wise=True, group_size=group, optimize=True, axis=1)
    q, meta = Quantizer.quantize(x, bitpack=False, device="cpu", **kw)
    # The prototype's compute_dtype: scale and zero kept in the model's dtype (HQQLinear).
    meta.update(
        compute_dtype=x.dtype,
        scale=meta["scale"].to(x.dtype),
        zero=meta["zero"].to(x.dtype),
    )
    y = Quantizer.dequantize(q, meta)
    # What the library's own bit packing stores (3-bit packs 10 codes in an int32 per row).
    packed, _ = Quantizer.quantize(x, bitpack=True, device="cpu", **kw)
    groups = x.numel() // group
    return y, packed.numel() * packed.element_size() + 2 * groups * x.element_size()


def lib_mx(x, element):
    from torchao.prototype.mx_formats import constants as C
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx

    elem, bits = {
        "e2m1": (torch.float4_e2m1fn_x2, 4),
        "e2m3": (C.DTYPE_FP6_E2M3, 6),
        "e3m2": (C.DTYPE_FP6_E3M2, 6),
        "e4m3": (torch.float8_e4m3fn, 8),
        "e5m2": (torch.float8_e5m2, 8),
    }[element]
    scale, data = to_mx(x.contiguous(), elem, 32)
    y = to_dtype(data, scale, elem, 32, x.dtype)
    return y, scale.numel() + (x.numel() * bits + 7) // 8


def lib_nvfp4(x):
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    t = NVFP4Tensor.to_nvfp4(x.contiguous(), per_tensor_scale=per_tensor_amax_to_scale(x.abs().max()))
    return t.dequantize(x.dtype), t.qdata.numel() + t.scale.numel() + 4


# TorchAO's MX and NVFP4 code takes f32 and bf16 only.
NO_F16 = ("f32", "bf16")

CASES = [
    # (plugin, codec, params, library, exact[, dtypes])
    ("lut4", "nf4", {"block": 64}, lambda x: lib_bnb(x, "nf4", 64), True),
    ("lut4", "fp4", {"block": 64}, lambda x: lib_bnb(x, "fp4", 64), True),
    ("lut4", "nf4", {"block": 128}, lambda x: lib_bnb(x, "nf4", 128), True),
    ("intq", "intn-affine-token", {"bits": 8}, lambda x: lib_affine_token(x, 8), True),
    ("intq", "intn-affine-token", {"bits": 4}, lambda x: lib_affine_token(x, 4), True),
    ("intq", "intn-affine-token", {"bits": 2}, lambda x: lib_affine_token(x, 2), True),
    # The same codes entropy-coded: equal values, fewer bytes than the library's packing.
    ("intq", "intn-affine-token", {"bits": 8, "entropy": "rans"}, lambda x: lib_affine_token(x, 8), True),
    ("intq", "intn-affine-token", {"bits": 4, "entropy": "rans"}, lambda x: lib_affine_token(x, 4), True),
    ("cast", "fp8-e4m3", {"scale": "per-token"}, lambda x: lib_fp8_row(x, torch.float8_e4m3fn), True),
    ("cast", "fp8-e5m2", {"scale": "per-token"}, lambda x: lib_fp8_row(x, torch.float8_e5m2), True),
    ("cast", "fp8-e4m3", {}, lambda x: lib_fp8_cast(x, torch.float8_e4m3fn), True),
    ("cast", "fp8-e5m2", {}, lambda x: lib_fp8_cast(x, torch.float8_e5m2), True),
    ("mx", "mxfp4", {}, lambda x: lib_mx(x, "e2m1"), True, NO_F16),
    ("mx", "mxfp6-e2m3", {}, lambda x: lib_mx(x, "e2m3"), True, NO_F16),
    ("mx", "mxfp6-e3m2", {}, lambda x: lib_mx(x, "e3m2"), True, NO_F16),
    ("mx", "mxfp8-e4m3", {}, lambda x: lib_mx(x, "e4m3"), True, NO_F16),
    ("mx", "mxfp8-e5m2", {}, lambda x: lib_mx(x, "e5m2"), True, NO_F16),
    ("mx", "nvfp4", {}, lib_nvfp4, True, NO_F16),
    ("hqq", "hqq", {"bits": 4, "group": 64}, lambda x: lib_hqq(x, 4, 64), False),
    ("hqq", "hqq", {"bits": 3, "group": 64}, lambda x: lib_hqq(x, 3, 64), False),
    ("hqq", "hqq", {"bits": 2, "group": 64}, lambda x: lib_hqq(x, 2, 64), False),
    ("hqq", "hqq", {"bits": 8, "group": 64}, lambda x: lib_hqq(x, 8, 64), False),
]


# ---------------------------------------------------------------------------------------------
# Comparison


def build():
    packages = [f"splitbench-codec-{p}" for p in PLUGINS] + ["splitbench"]
    cmd = ["cargo", "build", "--release", "--quiet"]
    for p in packages:
        cmd += ["-p", p]
    subprocess.run(cmd, cwd=REPO, check=True)


def splitbench(plugin, codec, params, tensors, tmp):
    src, dst = Path(tmp) / "in.safetensors", Path(tmp) / "out.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(src))
    lib = TARGET / f"libsplitbench_codec_{plugin}.so"
    subprocess.run(
        ROUNDTRIP
        + ["--plugin", str(lib), "--codec", codec, "--params", json.dumps(params)]
        + ["--input", str(src), "--output", str(dst)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with safe_open(str(dst), "pt") as f:
        sizes = json.loads(f.metadata()["wire_bytes"])
        return {k: f.get_tensor(k) for k in f.keys()}, sizes


def ulps_apart(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest distance in units in the last place of the dtype (NaN positions must agree)."""
    fa, fb = a.float(), b.float()
    if not torch.equal(torch.isnan(fa), torch.isnan(fb)):
        return float("inf")
    ok = ~torch.isnan(fa)
    fa, fb = fa[ok], fb[ok]
    if fa.numel() == 0:
        return 0.0
    mant = {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}[a.dtype]
    min_exp = {torch.float32: -126, torch.float16: -14, torch.bfloat16: -126}[a.dtype]
    big = torch.maximum(fa.abs(), fb.abs())
    exp = torch.floor(torch.log2(torch.clamp(big, min=2.0**min_exp)))
    spacing = torch.exp2(exp - mant)
    return float(((fa - fb).abs() / spacing).max())


def quant_step(x, bits, group):
    """Each value's quantization step in hqq's grid: (max - min) / (2^bits - 1) of its group."""
    xs = x.float().reshape(-1, group)
    step = (xs.max(1).values - xs.min(1).values) / (2**bits - 1)
    return step[:, None].expand(-1, group).reshape(x.shape)


def code_flips(x, ys, yl, bits, group):
    """hqq: (share of values more than half a step apart, i.e. with different codes; largest
    difference beyond 2 ulps of the model dtype, in steps)."""
    step = quant_step(x, bits, group).clamp(min=1e-30)
    d = (ys.float() - yl.float()).abs()
    mant = {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}[x.dtype]
    big = torch.maximum(ys.float().abs(), yl.float().abs()).clamp(min=2.0**-126)
    two_ulps = 2 * torch.exp2(torch.floor(torch.log2(big)) - mant)
    flips = float((d > step / 2).float().mean())
    steps = float(((d - two_ulps).clamp(min=0) / step).max())
    return flips, steps


def rel_l2(x, y):
    x, y = x.double(), y.double()
    return float((x - y).norm() / x.norm())


def survey(states):
    """Bits per value and error against the input, per codec, on the states in bf16."""
    print(f"{'codec':<50} {'bits/value':>10} {'relL2':>8} {'SNR dB':>7} {'relL2 tok>0':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        tensors = {n: t.to(torch.bfloat16) for n, t in states.items()}
        for plugin, codec, params in SURVEY:
            ours, sizes = splitbench(plugin, codec, params, tensors, tmp)
            values = sum(t.numel() for t in tensors.values())
            bits = 8 * sum(sizes.values()) / values
            x = torch.cat([t.double().flatten() for t in tensors.values()])
            y = torch.cat([ours[n].double().flatten() for n in tensors])
            rel = float((x - y).norm() / x.norm())
            # Without the first token, whose attention-sink value dominates every norm.
            xs = torch.cat([t[:, 1:].double().flatten() for t in tensors.values()])
            ys = torch.cat([ours[n][:, 1:].double().flatten() for n in tensors])
            rel_rest = float((xs - ys).norm() / xs.norm())
            label = f"{plugin}/{codec} {json.dumps(params, separators=(',', ':'))}"
            snr = -20 * np.log10(rel) if rel > 0 else float("inf")
            print(f"{label:<50} {bits:>10.3f} {rel:>8.5f} {snr:>7.1f} {rel_rest:>11.5f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--input", help="hidden states (safetensors)")
    ap.add_argument("--gguf", help="SmolLM2 GGUF to capture hidden states from")
    ap.add_argument("--tokens", type=int, default=128, help="tokens to capture (default 128)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--only", help="only codecs whose name contains this")
    ap.add_argument(
        "--survey",
        action="store_true",
        help="instead: bits per value and error of every built-in codec family (bf16)",
    )
    args = ap.parse_args()

    torch.manual_seed(0)
    if not args.no_build:
        build()
    states, source = load_states(args)
    hidden = next(iter(states.values())).shape[-1]
    print(f"hidden states: {source}")
    for name, t in states.items():
        a = t.abs()
        print(
            f"  {name}: shape {tuple(t.shape)}, max |x| {float(a.max()):.1f} "
            f"(token {int(a.amax(-1).argmax(-1).flatten()[0])}), median |x| {float(a.median()):.3f}"
        )
    print()
    if args.survey:
        survey(states)
        return
    header = (
        f"{'codec':<50} {'dtype':<5} {'max |Δ|':>9} {'ulps':>5} {'differ':>7} {'flips':>7} "
        f"{'relL2 sb':>9} {'relL2 lib':>9} {'B/tok sb':>8} {'B/tok lib':>9}  verdict"
    )
    print(header)
    print("-" * len(header))
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for plugin, codec, params, library, exact, *only in CASES:
            label = f"{plugin}/{codec} {json.dumps(params, separators=(',', ':'))}"
            if args.only and args.only not in label:
                continue
            for dname, dtype in DTYPES.items():
                if only and dname not in only[0]:
                    continue
                tensors = {n: t.to(dtype) for n, t in states.items()}
                ours, sizes = splitbench(plugin, codec, params, tensors, tmp)
                worst, worst_ulps, differing, flips, steps = 0.0, 0.0, 0.0, 0.0, 0.0
                err_ours, err_lib, tokens, ours_bytes, lib_bytes = 0.0, 0.0, 0, 0, 0
                for n, x in tensors.items():
                    yl, nbytes = library(x)
                    ys = ours[n]
                    assert ys.dtype == yl.dtype == x.dtype, (ys.dtype, yl.dtype, x.dtype)
                    tokens += x.numel() // x.shape[-1]
                    ours_bytes += sizes[n]
                    lib_bytes += nbytes
                    d = (ys.float() - yl.float()).abs()
                    worst = max(worst, float(torch.nan_to_num(d, nan=float("inf")).max()))
                    worst_ulps = max(worst_ulps, ulps_apart(ys, yl))
                    differing = max(differing, float((d > 0).float().mean()))
                    err_ours = max(err_ours, rel_l2(x, ys))
                    err_lib = max(err_lib, rel_l2(x, yl))
                    if plugin == "hqq":
                        f, st = code_flips(x, ys, yl, params["bits"], params["group"])
                        flips, steps = max(flips, f), max(steps, st)
                if exact:
                    ok = worst_ulps <= 1.0
                    verdict = "equal" if worst == 0 else ("≤ 1 ulp" if ok else "DIFFERENT")
                    flips_text = "-"
                else:
                    ok = (
                        steps <= TOLERANCE_HQQ["max_steps"]
                        and flips <= TOLERANCE_HQQ["max_code_flips"]
                    )
                    verdict = "equal" if worst == 0 else ("in tolerance" if ok else "OUT OF TOLERANCE")
                    flips_text = f"{flips:.3%}"
                failed |= not ok
                print(
                    f"{label:<50} {dname:<5} {worst:>9.3g} {min(worst_ulps, 99999):>5.0f} "
                    f"{differing:>7.2%} {flips_text:>7} {err_ours:>9.5f} {err_lib:>9.5f} "
                    f"{ours_bytes / tokens:>8.1f} {lib_bytes / tokens:>9.1f}  {verdict}"
                )
    print()
    print(
        f"B/tok: wire bytes per token at hidden {hidden} (library: what it stores, same "
        "fields). ulps: largest distance in units in the last place of the model dtype. "
        "differ: values not bit-identical. relL2: ||x - y|| / ||x|| against the input (largest "
        "over tensors). hqq's tolerance: codes differ ('flips', more than half a step apart) on "
        f"at most {TOLERANCE_HQQ['max_code_flips']:.1%} of values, and no value is more than "
        f"{TOLERANCE_HQQ['max_steps']:g} quantization step (+ 2 ulps) away; why in "
        "docs/codecs.md."
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
