#!/usr/bin/env bash
# Sets up a CUDA 13.0 toolkit from PyPI wheels in DIR (default: $HOME/.cache/splitbench-cuda),
# for machines without one (no GPU needed to build). Prints the CUDA_HOME to use.
#
# The wheels ship no libcuda (that comes with the GPU driver), so a link stub with the driver
# functions cudarc declares is generated; the real libcuda.so.1 is loaded at run time.
# nvcc must stay at 13.0.x: 13.1+ emits PTX that driver 580 cannot load.
set -euo pipefail
dir="${1:-$HOME/.cache/splitbench-cuda}"
cuda_home="$dir/cuda"
pins=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)
stamp="$cuda_home/.splitbench-toolchain"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ]; then
  echo "$cuda_home"
  exit 0
fi

mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv" >&2
fi
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
site=$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cu13="$site/nvidia/cu13"
[ -x "$cu13/bin/nvcc" ] || { echo "nvcc not found under $cu13 after pip install" >&2; exit 1; }

rm -rf "$cuda_home"
mkdir -p "$cuda_home/lib64/stubs"
ln -s "$cu13/bin" "$cuda_home/bin"
ln -s "$cu13/include" "$cuda_home/include"
ln -s "$cu13/nvvm" "$cuda_home/nvvm"
# The linker wants unversioned names; the wheels ship only lib*.so.N.
for lib in "$cu13"/lib/lib*.so*; do
  name=$(basename "$lib")
  ln -sf "$lib" "$cuda_home/lib64/$name"
  ln -sf "$lib" "$cuda_home/lib64/${name%%.so*}.so"
done

# libcuda stub: every cu* function cudarc's driver bindings declare, read from the cudarc
# crate that Cargo.lock pins (its .crate file in cargo's cache; `cargo fetch` puts it there).
registry="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
crate=$(ls "$registry"/*/cudarc-0.19.*.crate 2>/dev/null | tail -n 1 || true)
if [ -z "$crate" ]; then
  (cd "$(dirname "$0")/.." && cargo fetch --quiet >&2)
  crate=$(ls "$registry"/*/cudarc-0.19.*.crate | tail -n 1)
fi
tar -xzOf "$crate" --wildcards '*/src/driver/sys/mod.rs' \
  | grep -oE '^\s+fn (cu[A-Za-z0-9_]+)\(' | sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
  | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$dir/libcuda-stub.c"
[ -s "$dir/libcuda-stub.c" ] || { echo "no cu* functions found in $crate" >&2; exit 1; }
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda_home/lib64/stubs/libcuda.so" "$dir/libcuda-stub.c"

echo "${pins[*]}" > "$stamp"
echo "$cuda_home"
