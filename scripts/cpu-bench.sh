#!/usr/bin/env bash
# Our full style iteration on the CPU adapter (lavapipe) side by side with PyTorch on the CPU, same machine, same
# run: `neural-style bench` and benches/torch/torch_cpu_baseline.py at each size, then the ratio table.
#
#   scripts/cpu-bench.sh            # sizes 32 64 128
#   scripts/cpu-bench.sh 64 96
#
# PyTorch comes from a virtual environment this script makes on first use (CPU wheel from download.pytorch.org,
# ~200 MB; else PyPI's): $TORCH_VENV, default ~/.cache/neural-style/torch-cpu-venv. Where it cannot be made (no network, no
# python3-venv), the script says so and prints our column alone.
# Environment:
#   BIN          our binary (default target/release/neural-style; built if missing)
#   ITERATIONS   timed iterations of ours (default 10); ITERS for torch's (default 5)
#   THREADS      torch's threads (default: every core, as lavapipe uses)
#   ADAPTER      passed to --adapter (default: the best adapter, lavapipe on a machine without a GPU)
#   RESULTS      folder for the raw JSON lines (default: a temp folder)
set -uo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(32 64 128)
for s in "${sizes[@]}"; do
    case "$s" in
        '' | *[!0-9]*) echo "cpu-bench: size must be a number, got '$s'" >&2; exit 2 ;;
    esac
done
BIN=${BIN:-target/release/neural-style}
ITERATIONS=${ITERATIONS:-10}
THREADS=${THREADS:-$(nproc)}
TORCH_VENV=${TORCH_VENV:-$HOME/.cache/neural-style/torch-cpu-venv}
RESULTS=${RESULTS:-$(mktemp -d /tmp/cpu-bench.XXXXXX)}
mkdir -p "$RESULTS"
ours=$RESULTS/ours.jsonl
torch=$RESULTS/torch.jsonl
: > "$ours"
: > "$torch"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

if [ ! -x "$BIN" ]; then
    echo "== building $BIN"
    cargo build --release || { echo "cpu-bench: the build failed" >&2; exit 1; }
fi

have_torch=0
if [ -x "$TORCH_VENV/bin/python" ] && "$TORCH_VENV/bin/python" -c "import torch" 2>/dev/null; then
    have_torch=1
else
    echo "== making $TORCH_VENV (PyTorch CPU wheel, once)"
    # The CPU-only wheel is ~200 MB; where download.pytorch.org is unreachable, PyPI's default build (CUDA
    # libraries included, ~5 GB installed) runs on the CPU just the same.
    if python3 -m venv "$TORCH_VENV" &&
        { "$TORCH_VENV/bin/pip" install -q --index-url https://download.pytorch.org/whl/cpu torch 2>/dev/null ||
            "$TORCH_VENV/bin/pip" install -q torch; }; then
        have_torch=1
    else
        echo "cpu-bench: could not install PyTorch into $TORCH_VENV (network? python3-venv?); printing our column only" >&2
    fi
fi

extra=()
[ -n "${ADAPTER:-}" ] && extra+=(--adapter "$ADAPTER")
for s in "${sizes[@]}"; do
    echo "== neural-style bench --size $s --iterations $ITERATIONS"
    if line=$("$BIN" bench --size "$s" --iterations "$ITERATIONS" "${extra[@]}" 2>"$RESULTS/ours-$s.err"); then
        echo "$line" >> "$ours"
    else
        echo "cpu-bench: ours failed at $s: $(tail -1 "$RESULTS/ours-$s.err")" >&2
    fi
    if [ $have_torch = 1 ]; then
        echo "== torch_cpu_baseline.py $s (THREADS=$THREADS)"
        THREADS=$THREADS "$TORCH_VENV/bin/python" benches/torch/torch_cpu_baseline.py "$s" >> "$torch" 2>"$RESULTS/torch-$s.err" ||
            echo "cpu-bench: torch failed at $s: $(tail -1 "$RESULTS/torch-$s.err")" >&2
    fi
done

python3 - "$ours" "$torch" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch = {}
for l in open(sys.argv[2]):
    if l.strip():
        d = json.loads(l)
        key = d["height"]
        torch[key] = min(torch.get(key, d), d, key=lambda r: r["ms_median"])  # PyTorch's best mode
if not ours:
    sys.exit("cpu-bench: no results of ours")
o = ours[0]
print(f"\nadapter: {o['adapter']} ({o['backend']}, {o['driver']})")
if torch:
    t = next(iter(torch.values()))
    print(f"peer: PyTorch {t['torch']} on the CPU, {t['threads']} threads, best of fp32 / channels_last")
print("\n| size | ours, ms/iter (steady) | ours, GFLOP/s (conv) | PyTorch, ms/iter | PyTorch, GFLOP/s | ours / PyTorch |")
print("|---|---|---|---|---|---|")
for r in ours:
    t = torch.get(r["size"])
    tm = f"{t['ms_median']:.1f} ({t['mode']})" if t else "—"
    tg = f"{t['gflops']}" if t else "—"
    ratio = f"{r['steady_ms_per_iter'] / t['ms_median']:.1f}x" if t else "—"
    print(f"| {r['size']}² | {r['steady_ms_per_iter']:.1f} | {r['conv_gflops']} | {tm} | {tg} | {ratio} |")
print(f"\nraw JSON: {sys.argv[1]}, {sys.argv[2]}")
PY
