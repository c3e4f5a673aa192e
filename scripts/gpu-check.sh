#!/usr/bin/env bash
# The GPU check, one script on a machine with an NVIDIA GPU (CUDA 13 driver and runtime
# libraries; torch and transformers for the peer):
#   scripts/gpu-dist.sh            # here, where it can build: CUDA binary, plugins, data
#   scripts/gpu-check.sh dist/gpu  # there, from the repository root
#
# 1. CPU vs CUDA logits on a tiny random model (f32 within 1e-4, bf16 within 5e-2 of the
#    largest logit), 2. an end-to-end eval on the GPU with every built-in codec, device wires
#    verified against the host path, failing unless every codec finished and `identity` is
#    exact, 3. throughput (processed and scored tokens/s, share of time in codecs, in
#    transfers and at the links outside both, then a profiled run's share of time by phase)
#    on random-weight Qwen3-0.6B- and Llama-3-8B-shaped models,
#    4. the peer comparison: HF transformers + PyTorch (scripts/peer_hf.py) against
#    splitbench, tokens/s and PPL, same model, text and protocol,
#    5. decode speed: `bench --decode`, greedy generation with a KV cache, ms per step beside
#    HF `generate` (peer_hf.py --generate) on the same model, prompts and dtype, alternating.
#    Stages go on after a failure; the exit status says whether any failed.
# GPU_CHECK_MODELS (default "qwen3-0.6b llama-3-8b") lists the models of stages 3-5: preset
# names, or dir:PATH for a model folder; drop llama-3-8b where 16 GB of weights do not fit.
# GPU_CHECK_DEVICE (default cuda:0) is model.device; "auto" on a CPU build runs every stage on
# the CPU, which checks the script itself. PYTHON (default python3) has torch and transformers.
# Every step has a time limit (GPU_CHECK_STEP_S, default 600 s; steps on the large models get
# twice that) and the whole check a deadline (GPU_CHECK_DEADLINE_S from the start, default
# 3600 s): a step that would run past the deadline is cut short there and counted as failed, so
# the check ends, with its tables so far, inside a leased machine's time.
set -uo pipefail
# DIST is read from where the script was started, then the configs from beside the script.
dist="$(cd "${1:-dist/gpu}" && pwd)" || exit 2
cd "$(dirname "$0")/.."
work="${GPU_CHECK_WORK:-/tmp/splitbench-gpu-check}"
bin="$dist/splitbench"
data="$dist/wiki.test.raw"
export SPLITBENCH_PLUGIN_PATH="$dist/plugins"
[ -x "$bin" ] || { echo "no splitbench in $dist: run scripts/gpu-dist.sh first" >&2; exit 2; }
mkdir -p "$work"
failed=()
started=$SECONDS
step_s="${GPU_CHECK_STEP_S:-600}"
deadline_s="${GPU_CHECK_DEADLINE_S:-3600}"
stage() { printf '\n== %s (%s, %d s in)\n' "$1" "$(date +%T)" $((SECONDS - started)); }
# check LIMIT_S CMD...: runs CMD for at most LIMIT_S seconds and no later than the deadline.
check() {
  local limit=$1 left=$((deadline_s - (SECONDS - started)))
  shift
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 0 ]; then
    echo "skipped (past the deadline): $*" >&2
    failed+=("(skipped) $*")
    return 1
  fi
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "timed out after $limit s: $*" >&2
  [ $rc -eq 0 ] || failed+=("$*")
  return $rc
}

# The CUDA binary needs the CUDA 13 runtime libraries (docs/gpu.md, "Two binaries"). Where the
# loader does not find them, take a CUDA toolkit's and then the ones PyTorch's wheels bring.
if ldd "$bin" 2>/dev/null | grep -q 'not found'; then
  libs=$("${PYTHON:-python3}" - 2>/dev/null <<'PY'
import glob, os, site
dirs = {os.path.dirname(f) for sp in site.getsitepackages()
        for f in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))
PY
  )
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && libs="$d${libs:+:$libs}"
  done
  # Where a container mounts the driver (libcuda.so.1) outside the loader's paths.
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$d" ] && libs="${libs:+$libs:}$d"
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
device="${GPU_CHECK_DEVICE:-cuda:0}"
# sets MODEL [RUNS]: the overrides every command gets; records go to $work/RUNS (default runs).
sets() {
  echo --set "model.path=\"$1\"" --set "data.path=\"$data\"" \
    --set "output.dir=\"$work/${2:-runs}\"" --set "model.device=\"$device\""
}
big=$((2 * step_s))

stage "machine"
cat "$dist/check/COMMIT" 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvidia-smi | grep -o 'CUDA Version: [0-9.]*'
echo "cpus: $(nproc)"
ldd "$bin" | grep -E 'libcuda\.|libcudart|libcublas|libcurand|libnvrtc|not found'
# The device codecs open NVRTC by name (plugin-api/src/cuda.rs): the first one on the path.
nvrtc=$(for d in ${LD_LIBRARY_PATH//:/ }; do ls "$d"/libnvrtc.so.1[0-9]* 2>/dev/null; done | head -n 1)
echo "libnvrtc: ${nvrtc:-$(ldconfig -p 2>/dev/null | grep -m 1 -o '/[^ ]*libnvrtc\.so\.1[0-9]$')}"
"${PYTHON:-python3}" -c 'import torch, transformers; print("torch", torch.__version__, "CUDA", torch.version.cuda, "| transformers", transformers.__version__)'

models="${GPU_CHECK_MODELS:-qwen3-0.6b llama-3-8b}"
# The preset models' random weights (16 GB for Llama-3-8B, a minute or more on one core) are
# written while stages 1-2 check correctness; the timed stages wait for them, so nothing else
# runs while they are timed. A model is renamed into place only when it is complete.
(
  for entry in $models; do
    model="$work/$entry"
    [ "${entry#dir:}" = "$entry" ] && [ ! -f "$model/model.safetensors" ] || continue
    rm -rf "$model.partial"
    check "$big" "$bin" synth-model "$model.partial" --preset "$entry" --dtype bf16 &&
      mv "$model.partial" "$model"
  done
) &
synth=$!

stage "1. CPU vs CUDA logits, tiny random Llama"
for dtype in f32 bf16; do
  check "$step_s" "$bin" synth-model "$work/tiny-$dtype" --layers 4 --hidden 256 \
    --intermediate 512 --heads 8 --kv-heads 4 --dtype "$dtype" >/dev/null &&
    # shellcheck disable=SC2046
    check "$step_s" "$bin" check-device configs/gpu/e2e.toml $(sets "$work/tiny-$dtype") \
      --set "model.dtype=\"$dtype\"" --set data.first_k_tokens=2048
done

stage "2. end-to-end eval on the GPU, every built-in codec, --verify-wire"
check "$step_s" "$bin" synth-model "$work/e2e" --layers 8 --hidden 256 --intermediate 512 \
  --heads 8 --kv-heads 4 --dtype bf16 >/dev/null &&
  # shellcheck disable=SC2046
  check "$step_s" "$bin" run configs/gpu/e2e.toml --verify-wire $(sets "$work/e2e" runs-e2e)
# Every codec of the config finished, `identity` equals `none` exactly (KLD 0, top-1 100%, the
# same NLL), and every device wire equalled the host path's (run fails otherwise).
e2e_run=$(ls -d "$work"/runs-e2e/*/ 2>/dev/null | tail -n 1)
check "$step_s" "${PYTHON:-python3}" - "${e2e_run:-$work/runs-e2e/none}" configs/gpu/e2e.toml <<'PY'
import glob, json, sys, tomllib
run, config = sys.argv[1], sys.argv[2]
wanted = tomllib.load(open(config, "rb"))["codec"]
try:
    rows = {r["codec"]: r for r in json.load(open(f"{run}/summary.json"))}
except OSError as e:
    sys.exit(f"no summary of the end-to-end run: {e}")
problems = []
for r in rows.values():
    if r.get("failure"):
        problems.append(f"{r['codec']} failed: {r['failure']}")
if len(rows) != len(wanted):
    problems.append(f"{len(rows)} codecs in the summary, {len(wanted)} in {config}")
ident, none = rows.get("identity"), rows.get("none")
if not (ident and none):
    problems.append("identity or none missing from the run")
elif not (ident["kld_mean"] == 0 and ident["top1_agreement"] == 1 and ident["ppl"] == none["ppl"]):
    problems.append(f"identity is not exact on the GPU: KLD {ident['kld_mean']}, top-1 "
                    f"{ident['top1_agreement']}, PPL {ident['ppl']} vs none's {none['ppl']}")
for f in sorted(glob.glob(run + "/*.json")):
    r = json.load(open(f))
    if "traffic" in r:
        paths = sorted({l["path"] for l in r["traffic"]["links"]})
        print(f"  {r['codec']:<28} link path: {','.join(paths)}")
print(f"  {len(rows)} codecs; identity: KLD {ident and ident['kld_mean']}, "
      f"top-1 {ident and ident['top1_agreement']}")
if problems:
    print("\n".join("  " + p for p in problems))
    sys.exit(1)
PY

stage "waiting for the random-weight models"
wait "$synth"
for entry in $models; do
  if [ "${entry#dir:}" != "$entry" ]; then
    model="${entry#dir:}"
    preset=$(basename "$model")
  else
    preset="$entry"
    model="$work/$preset"
    if [ ! -f "$model/model.safetensors" ]; then
      echo "no random-weight $preset (its synth-model failed or ran out of time; see above)" >&2
      failed+=("synth-model --preset $preset")
      continue
    fi
  fi
  stage "3. throughput, random-weight $preset, bf16, batch 2 x 2048, 4 nodes"
  # shellcheck disable=SC2046
  check "$big" "$bin" bench configs/gpu/throughput.toml --batches 3 --no-sweep --profile \
    --json "$work/bench-$preset.json" $(sets "$model")

  stage "4. peer: HF transformers + PyTorch vs splitbench, $preset"
  check "$big" "${PYTHON:-python3}" scripts/peer_hf.py --model "$model" --data "$data" \
    --first-k-tokens 6144 --max-length 2048 --stride 512 --batch-size 2 --nodes 4 --dtype bf16 \
    --device "$([ "$device" = auto ] && echo cpu || echo "$device")" \
    --variants none,int8-token,int8-token@host >"$work/peer-$preset.jsonl"
  # Its own records folder, so that the table below reads this run's PPL or none at all.
  # shellcheck disable=SC2046
  check "$big" "$bin" run configs/gpu/peer.toml $(sets "$model" "runs-peer-$preset") \
    >"$work/run-$preset.txt"
  check "$step_s" "${PYTHON:-python3}" - "$work" "$preset" <<'PY'
import glob, json, sys
work, preset = sys.argv[1], sys.argv[2]
def load(what, read):
    try:
        return read()
    except (OSError, ValueError, IndexError, KeyError) as e:
        print(f"({preset}: no {what}: {e!r}; see the failed steps above)")
        return None
bench = load("splitbench throughput", lambda: {
    r["codec"]: r for r in json.load(open(f"{work}/bench-{preset}.json"))}) or {}
peer = load("peer results", lambda: [
    json.loads(l) for l in open(f"{work}/peer-{preset}.jsonl") if l.strip()]) or []
ppl = load("splitbench PPL", lambda: {r["codec"]: r["ppl"] for r in json.load(
    open(glob.glob(f"{work}/runs-peer-{preset}/*/summary.json")[0]))}) or {}
if not peer:
    sys.exit(f"no comparison table for {preset}: the peer printed nothing")
nan = float("nan")
print(f"{'variant':<22} {'splitbench tok/s':>17} {'peer tok/s':>11} {'ratio':>6} "
      f"{'codec % (sb/peer)':>18} {'transfer % (sb)':>16} {'link % (sb)':>12} "
      f"{'splitbench PPL':>15} {'peer PPL':>10}")
for p in peer:
    name = "none" if p["codec"] == "none" else (
        "int8-token (host)" if p["path"] == "host" else "int8-token")
    b = bench.get(name, {})
    sb_tps = b.get("tokens_per_s", nan)
    sb_ppl = ppl.get("int8-token" if p["codec"] != "none" else "none", nan)
    print(f"{name:<22} {sb_tps:>17.0f} {p['tokens_per_s']:>11.0f} "
          f"{sb_tps / p['tokens_per_s']:>5.2f}x "
          f"{100 * b.get('codec_share', nan):>8.1f} / {100 * p['codec_share']:<7.1f} "
          f"{100 * b.get('transfer_share', nan):>16.1f} "
          f"{100 * b.get('link_overhead_share', nan):>12.1f} {sb_ppl:>15.8g} {p['ppl']:>10.8g}")
print(f"(peer: torch {peer[0]['torch']}, transformers {peer[0]['transformers']}; "
      f"{peer[0]['tokens']} tokens, PPL over all windows, tokens/s after one warm-up batch; "
      "splitbench tok/s from bench, 3 batches after one warm-up)")
if not (bench and ppl):
    sys.exit(1)
PY

  stage "5. decode: splitbench vs HF generate, $preset, bf16, 4 prompts x 128 tokens, 64 new"
  # shellcheck disable=SC2046
  check "$big" "$bin" bench configs/gpu/decode.toml --decode --rounds 3 \
    --peer scripts/peer_hf.py $(sets "$model")
done

stage "done"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all stages passed"
