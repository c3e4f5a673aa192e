#!/usr/bin/env bash
# The GPU check, one script on a machine with an NVIDIA GPU (CUDA 13 driver and runtime
# libraries; torch and transformers for the peer):
#   scripts/gpu-dist.sh            # here, where it can build: CUDA binary, plugins, data
#   scripts/gpu-check.sh dist/gpu  # there, from the repository root
#
# 1. CPU vs CUDA logits on a tiny random model (f32 within 1e-4, bf16 within 5e-2 of the
#    largest logit), 2. an end-to-end eval on the GPU with every built-in codec, device wires
#    verified against the host path, 3. throughput (tokens/s, share of time in codecs and in
#    transfers) on random-weight Qwen3-0.6B- and Llama-3-8B-shaped models, 4. the peer
#    comparison: HF transformers + PyTorch (scripts/peer_hf.py) against splitbench, tokens/s
#    and PPL, same model, text and protocol. Stages go on after a failure; the exit status says
#    whether any failed.
# GPU_CHECK_MODELS (default "qwen3-0.6b llama-3-8b") lists the models of stages 3-4: preset
# names, or dir:PATH for a model folder; drop llama-3-8b where 16 GB of weights do not fit.
# GPU_CHECK_DEVICE (default cuda:0) is model.device; "auto" on a CPU build runs every stage on
# the CPU, which checks the script itself. PYTHON (default python3) has torch and transformers.
set -uo pipefail
cd "$(dirname "$0")/.."
dist="$(cd "${1:-dist/gpu}" && pwd)"
work="${GPU_CHECK_WORK:-/tmp/splitbench-gpu-check}"
bin="$dist/splitbench"
data="$dist/wiki.test.raw"
export SPLITBENCH_PLUGIN_PATH="$dist/plugins"
mkdir -p "$work"
failed=()
stage() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }
check() { "$@" || failed+=("$*"); }
device="${GPU_CHECK_DEVICE:-cuda:0}"
sets() {
  echo --set "model.path=\"$1\"" --set "data.path=\"$data\"" \
    --set "output.dir=\"$work/runs\"" --set "model.device=\"$device\""
}

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "cpus: $(nproc)"

stage "1. CPU vs CUDA logits, tiny random Llama"
for dtype in f32 bf16; do
  "$bin" synth-model "$work/tiny-$dtype" --layers 4 --hidden 256 --intermediate 512 \
    --heads 8 --kv-heads 4 --dtype "$dtype" >/dev/null
  # shellcheck disable=SC2046
  check "$bin" check-device configs/gpu/e2e.toml $(sets "$work/tiny-$dtype") \
    --set "model.dtype=\"$dtype\"" --set data.first_k_tokens=2048
done

stage "2. end-to-end eval on the GPU, every built-in codec, --verify-wire"
"$bin" synth-model "$work/e2e" --layers 8 --hidden 256 --intermediate 512 --heads 8 \
  --kv-heads 4 --dtype bf16 >/dev/null
# shellcheck disable=SC2046
check "$bin" run configs/gpu/e2e.toml --verify-wire $(sets "$work/e2e")
newest=$(ls -td "$work"/runs/*/ | head -n 1)
"${PYTHON:-python3}" - "$newest" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    r = json.load(open(f))
    if "traffic" in r:
        paths = sorted({l["path"] for l in r["traffic"]["links"]})
        print(f"  {r['codec']:<28} link path: {','.join(paths)}")
PY

for entry in ${GPU_CHECK_MODELS:-qwen3-0.6b llama-3-8b}; do
  if [ "${entry#dir:}" != "$entry" ]; then
    model="${entry#dir:}"
    preset=$(basename "$model")
  else
    preset="$entry"
    model="$work/$preset"
    [ -f "$model/model.safetensors" ] || "$bin" synth-model "$model" --preset "$preset" --dtype bf16
  fi
  stage "3. throughput, random-weight $preset, bf16, batch 2 x 2048, 4 nodes"
  # shellcheck disable=SC2046
  check "$bin" bench configs/gpu/throughput.toml --batches 3 --no-sweep \
    --json "$work/bench-$preset.json" $(sets "$model")

  stage "4. peer: HF transformers + PyTorch vs splitbench, $preset"
  check "${PYTHON:-python3}" scripts/peer_hf.py --model "$model" --data "$data" --first-k-tokens 6144 \
    --max-length 2048 --stride 512 --batch-size 2 --nodes 4 --dtype bf16 \
    --device "$([ "$device" = auto ] && echo cpu || echo "$device")" \
    --variants none,int8-token,int8-token@host >"$work/peer-$preset.jsonl"
  # shellcheck disable=SC2046
  check "$bin" run configs/gpu/peer.toml $(sets "$model") >"$work/run-$preset.txt"
  check "${PYTHON:-python3}" - "$work" "$preset" <<'PY'
import glob, json, os, sys
work, preset = sys.argv[1], sys.argv[2]
try:
    bench = {r["codec"]: r for r in json.load(open(f"{work}/bench-{preset}.json"))}
    peer = [json.loads(l) for l in open(f"{work}/peer-{preset}.jsonl") if l.strip()]
    runs = sorted(glob.glob(f"{work}/runs/*/summary.json"), key=os.path.getmtime)
    ppl = {r["codec"]: r["ppl"] for r in json.load(open(runs[-1]))}
    assert peer, "the peer printed nothing"
except (OSError, ValueError, IndexError, KeyError, AssertionError) as e:
    sys.exit(f"no comparison table for {preset}: {e!r} (see the failed stages above)")
print(f"{'variant':<22} {'splitbench tok/s':>17} {'peer tok/s':>11} {'codec % (sb/peer)':>18} {'splitbench PPL':>15} {'peer PPL':>10}")
for p in peer:
    name = "none" if p["codec"] == "none" else (
        "int8-token (host)" if p["path"] == "host" else "int8-token")
    b = bench.get(name, {})
    sb_ppl = ppl.get("int8-token" if p["codec"] != "none" else "none")
    print(f"{name:<22} {b.get('tokens_per_s', float('nan')):>17.0f} {p['tokens_per_s']:>11.0f} "
          f"{100 * b.get('codec_share', float('nan')):>8.1f} / {100 * p['codec_share']:<7.1f} "
          f"{sb_ppl:>15.4f} {p['ppl']:>10.4f}")
print(f"(peer: torch {peer[0]['torch']}, transformers {peer[0]['transformers']}; "
      f"{peer[0]['tokens']} tokens, PPL over all windows, tokens/s after one warm-up batch)")
PY
done

stage "done"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all stages passed"
