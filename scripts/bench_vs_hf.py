#!/usr/bin/env python3
"""splitbench against the prototype's engine (Hugging Face transformers + PyTorch), side by
side on the CPU: the same GGUF, token ids, windows, batches and thread count, the two engines
alternating for several rounds. Prints processed tokens/s (median, min-max) and peak RSS of
each, and their ratio.

    cargo build --release --workspace && scripts/fetch-smollm2.sh
    pip install torch transformers gguf accelerate
    scripts/bench_vs_hf.py configs/smollm2-vs-hf.toml [--rounds 3] [--threads 2]

Each engine times every batch but the first (a warm-up): splitbench with `bench --no-sweep
--batches N-1`, which runs the same windows in the same order as scripts/peer_hf.py. Peak RSS
is each process's own (wait4), model loading included.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env):
    """Runs cmd; returns its stdout. Exits with its stderr if it fails."""
    proc = subprocess.run(cmd, capture_output=True, env=env, text=True, check=False)
    out, err = proc.stdout, proc.stderr
    if proc.returncode != 0:
        sys.exit(f"bench_vs_hf: `{shlex.join(cmd)}` failed ({proc.returncode}):\n{err.strip()}")
    return out


def run_measured(cmd, env):
    """Runs cmd with its stdout captured; returns (stdout, peak RSS of that process in MB)."""
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"bench_vs_hf: `{shlex.join(cmd)}` failed ({proc.returncode}):\n{err.read().strip()}")
        return out.read(), usage.ru_maxrss / 1024


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a splitbench experiment with model.gguf and no codec")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--splitbench", default=os.path.join(ROOT, "target", "release", "splitbench"))
    p.add_argument("--python", default=sys.executable, help="the Python that has torch")
    args = p.parse_args()

    with open(args.config, "rb") as f:
        exp = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(args.config))
    gguf = exp.get("model", {}).get("gguf")
    if not gguf:
        sys.exit("bench_vs_hf: the config must name model.gguf (both engines read that file)")
    gguf = os.path.normpath(os.path.join(base, gguf))
    if not os.path.exists(gguf):
        sys.exit(f"bench_vs_hf: {gguf} does not exist; scripts/fetch-smollm2.sh fetches SmolLM2")
    if not os.access(args.splitbench, os.X_OK):
        sys.exit(f"bench_vs_hf: no {args.splitbench}; build it: cargo build --release --workspace")
    ev = exp.get("eval", {})
    max_length, stride = ev.get("max_length", 2048), ev.get("stride", 512)
    batch_size = ev.get("batch_size", 1)
    split_after = exp.get("plan", {}).get("split_after", [])

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        ids_path = os.path.join(tmp, "ids.json")
        run([args.splitbench, "tokenize", args.config, "--out", ids_path], env)
        with open(ids_path, encoding="utf-8") as f:
            n = len(json.load(f)["ids"])
        windows, begin = 0, 0
        while begin < n:  # scripts/peer_hf.py's windows(), counted
            windows += 1
            if begin + max_length >= n:
                break
            begin += stride
        batches = -(-windows // batch_size)
        if batches < 2:
            sys.exit("bench_vs_hf: the config gives one batch; both engines need a warm-up and one to time")
        sb_cmd = [args.splitbench, "bench", args.config, "--no-sweep", "--batches", str(batches - 1),
                  "--json", os.path.join(tmp, "bench.json")]
        hf_cmd = [args.python, os.path.join(ROOT, "scripts", "peer_hf.py"), "--gguf", gguf,
                  "--ids", ids_path, "--max-length", str(max_length), "--stride", str(stride),
                  "--batch-size", str(batch_size), "--dtype", "f32", "--device", "cpu",
                  "--threads", str(args.threads)]
        if split_after:
            hf_cmd += ["--split-after", ",".join(str(s) for s in split_after)]
        results = {"hf": [], "splitbench": []}
        versions, sb_setup = "", ""
        for r in range(args.rounds):
            out, rss = run_measured(hf_cmd, env)
            line = json.loads(out.strip().splitlines()[-1])
            versions = f"transformers {line['transformers']} + torch {line['torch']}"
            results["hf"].append((line["tokens_per_s"], rss))
            sb_out, rss = run_measured(sb_cmd, env)
            sb_setup = sb_out.splitlines()[0] if sb_out else ""
            with open(os.path.join(tmp, "bench.json"), encoding="utf-8") as f:
                row = json.load(f)[0]
            results["splitbench"].append((row["tokens_per_s"], rss))
            print(f"round {r + 1}/{args.rounds}: HF {results['hf'][-1][0]:.0f} tokens/s, "
                  f"splitbench {results['splitbench'][-1][0]:.0f} tokens/s", file=sys.stderr)

    sb_version = run([args.splitbench, "--version"], env).strip()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads; {n} tokens, windows "
          f"{max_length}/{stride}, batch {batch_size}, {batches - 1} timed batches of "
          f"{batch_size}x{max_length}; {args.rounds} rounds, alternating\n")
    print("| engine | tokens/s (median) | min–max | peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: |")
    med = {}
    for key, name in (("hf", f"HF {versions}, f32"), ("splitbench", f"{sb_version}, f32")):
        tps = [t for t, _ in results[key]]
        med[key] = statistics.median(tps)
        rss = max(m for _, m in results[key])
        print(f"| {name} | {med[key]:.0f} | {min(tps):.0f}–{max(tps):.0f} | {rss:.0f} |")
    print(f"\nsplitbench / HF: {med['splitbench'] / med['hf']:.2f}x tokens/s")
    print(f"splitbench's {sb_setup}")


if __name__ == "__main__":
    main()
