#!/usr/bin/env bash
# One command for the performance table: our full style iteration (`neural-style bench`) and the PyTorch + cuDNN
# anchor (`torch_baseline.py`) at the same sizes, on the same card, in the same run, then the ratio table.
#
# On the GPU machine (after ../shared/device/pack here and sending .gl/ and .gpu/ with the tree):
#   source .gpu/env.sh; scripts/gpu-bench.sh 2>&1 | tee $OUT/gpu-bench.log
# Here, against lavapipe (no torch: the baseline is skipped and only our column is printed):
#   BIN=target/release/neural-style scripts/gpu-bench.sh 32 48
#
# Arguments: image sides (default 256 512 1024 2048).
# Environment:
#   BIN             our binary (default .gpu/bin/neural-style, else target/release/neural-style)
#   TORCH_BASELINE  the anchor script (default .gpu/torch_baseline.py, else benches/torch/torch_baseline.py)
#   PYTHON          python with torch (default python3)
#   ITERATIONS      timed iterations of our bench (default 20, the anchor's count)
#   ADAPTER         passed to --adapter
#   WEIGHTS         passed to --weights (default: random weights, seeded; timing does not depend on values)
#   RESULTS         folder for the raw JSON lines (default $OUT/gpu-bench if $OUT is set, else a temp folder)
#   SKIP_TORCH=1    do not run the anchor
#   TORCH_COMPILE=1 also time torch.compile (max-autotune, bf16, channels_last): the strongest anchor, minutes of
#                   compiling per size (not part of the default run's time budget)
#   KERNELS_BENCH   the kernel microbenchmark executable (default .gpu/benches/kernels when present), run at 512²
#                   with every variant; prints the 4x4 and 8x8 f32 GEMM cores side by side per conv (gemm-cores.md)
#   KERNELS_SIZE    the microbenchmarks' image side (default 512; smaller for a rehearsal on lavapipe)
#   FLOW_TESTS      the flow tests executable (default .gpu/tests/flow when present, else `cargo test --test flow`)
#   TILED_SIZE, TILED_BLOCK  the tiled-against-at-once step's side (default 2048) and block (default 1024 px owned: 4 blocks of 1312²)
#   MASKS_SIZE      the masked-against-unmasked step's side (default 512)
# Ends with "gpu-bench: done in N s": the whole run is meant to fit in 8 minutes on an H100 (not yet measured).
set -uo pipefail
cd "$(dirname "$0")/.."
bench_start=$(date +%s)

sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(256 512 1024 2048)
for s in "${sizes[@]}"; do
    case "$s" in
        '' | *[!0-9]*) echo "gpu-bench: size must be a number, got '$s'" >&2; exit 2 ;;
    esac
done

first_existing() { for f in "$@"; do [ -e "$f" ] && { echo "$f"; return 0; }; done; echo "$1"; }
BIN=${BIN:-$(first_existing .gpu/bin/neural-style target/release/neural-style)}
TORCH_BASELINE=${TORCH_BASELINE:-$(first_existing .gpu/torch_baseline.py benches/torch/torch_baseline.py ../shared/device/torch_baseline.py)}
PYTHON=${PYTHON:-python3}
ITERATIONS=${ITERATIONS:-20}
if [ -n "${RESULTS:-}" ]; then :; elif [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then RESULTS=$OUT/gpu-bench; else
    RESULTS=$(mktemp -d /tmp/gpu-bench.XXXXXX)
fi
mkdir -p "$RESULTS"
ours=$RESULTS/ours.jsonl
torch=$RESULTS/torch.jsonl
: > "$ours"
: > "$torch"

if [ ! -x "$BIN" ]; then
    echo "gpu-bench: no binary at $BIN (build with cargo build --release, or set BIN)" >&2
    exit 1
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "gpu-bench: $PYTHON not found; it is needed for the table" >&2
    exit 1
fi

# Step 1: the first-use check, as a first run on this card does it (a fresh verdict cache): the f32 set and, where
# the card has tensor cores, conv forward/backward-data, Gram and style_grad on them at whole and ragged tiles.
# Prints the table (one row per kernel, its max error vs the f64 reference) and the precision line a run would
# print ("tensor cores ... first-use check passed", or "f32 — the tensor-core kernels failed ... (why)").
echo "== first-use check ($BIN selftest, fresh cache)"
NEURAL_STYLE_CACHE_DIR="$RESULTS/first-use-cache" "$BIN" selftest ${ADAPTER:+--adapter "$ADAPTER"} \
    > "$RESULTS/first-use.txt" 2>&1
echo "  exit $?: $(tail -n 2 "$RESULTS/first-use.txt" | head -n 1)"
sed 's/^/  /' "$RESULTS/first-use.txt"
NEURAL_STYLE_CACHE_DIR="$RESULTS/first-use-cache" "$BIN" bench --size 64 --iterations 1 ${ADAPTER:+--adapter "$ADAPTER"} \
    2>/dev/null | grep '^{' | "$PYTHON" -c 'import json,sys; print("  a run would say:", json.loads(sys.stdin.read())["precision"])' \
    || echo "  (the precision line could not be read)"

echo "== neural-style bench ($BIN), sizes ${sizes[*]}, $ITERATIONS iterations each"
extra=()
[ -n "${ADAPTER:-}" ] && extra+=(--adapter "$ADAPTER")
[ -n "${WEIGHTS:-}" ] && extra+=(--weights "$WEIGHTS")
for s in "${sizes[@]}"; do
    start=$(date +%s)
    if line=$("$BIN" bench --size "$s" --iterations "$ITERATIONS" "${extra[@]}" 2>"$RESULTS/ours-$s.err"); then
        # The JSON object is the last line that starts with '{' (anything before it is chatter).
        json=$(printf '%s\n' "$line" | grep '^{' | tail -n 1)
        if [ -n "$json" ]; then
            printf '%s\n' "$json" >> "$ours"
            echo "  $s: done in $(( $(date +%s) - start )) s"
        else
            echo "  $s: no JSON in the output: $line" >&2
            printf '{"bench":"iteration","size":%s,"error":"no JSON output"}\n' "$s" >> "$ours"
        fi
    else
        rc=$?
        err=$RESULTS/ours-$s.err
        msg=$( (grep -i -m 1 'error' "$err" || head -n 2 "$err") | tr -d '\r' | tr '\n\t"\\' '   /' | cut -c1-300)
        echo "  $s: FAILED (exit $rc): $msg" >&2
        printf '{"bench":"iteration","size":%s,"error":"exit %s: %s"}\n' "$s" "$rc" "$msg" >> "$ours"
    fi
done

torch_note=""
if [ "${SKIP_TORCH:-0}" = 1 ]; then
    torch_note="PyTorch baseline skipped (SKIP_TORCH=1)"
elif [ ! -f "$TORCH_BASELINE" ]; then
    torch_note="PyTorch baseline skipped: $TORCH_BASELINE not found"
elif ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; then
    torch_note="PyTorch baseline skipped: $PYTHON has no torch with CUDA on this machine"
else
    echo "== PyTorch anchor ($TORCH_BASELINE)"
    "$PYTHON" "$TORCH_BASELINE" "${sizes[@]}" 2>"$RESULTS/torch.err" | tee "$torch" | sed 's/^/  /'
fi
[ -n "$torch_note" ] && echo "== $torch_note"

# Kernel microbenchmarks at KERNELS_SIZE² (each kernel variant alone, JSON lines), when the executable was packed.
KERNELS_BENCH=${KERNELS_BENCH:-$(first_existing .gpu/benches/kernels)}
if [ -x "$KERNELS_BENCH" ]; then
    KERNELS_SIZE=${KERNELS_SIZE:-512}
    case "$KERNELS_SIZE" in
        '' | *[!0-9]*) echo "gpu-bench: KERNELS_SIZE must be a number, got '$KERNELS_SIZE'" >&2; exit 2 ;;
    esac
    echo "== kernel microbenchmarks at ${KERNELS_SIZE}² ($KERNELS_BENCH)"
    # Every variant, the unused ones too: the 4x4 and 8x8 f32 GEMM cores side by side decide the conv's core.
    NEURAL_STYLE_BENCH_SIZE=$KERNELS_SIZE NEURAL_STYLE_BENCH_ALL_VARIANTS=1 "$KERNELS_BENCH" \
        > "$RESULTS/kernels-$KERNELS_SIZE.jsonl" 2> "$RESULTS/kernels-$KERNELS_SIZE.err"
    echo "  exit $?: $(grep -c '^{' "$RESULTS/kernels-$KERNELS_SIZE.jsonl") lines in $RESULTS/kernels-$KERNELS_SIZE.jsonl"
    # Prints, per VGG layer: "conv1_2 forward: Tiled 0.123 ms (45.6 TFLOP/s) | Tiled8x8 0.100 ms (56.1 TFLOP/s)".
    "$PYTHON" - "$RESULTS/kernels-$KERNELS_SIZE.jsonl" <<'PY' | tee "$RESULTS/gemm-cores.md"
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    k = r.get("kernel", "")
    for core in ("Tiled8x8", "Tiled"):
        if k.startswith("conv3x3") and "(%s)" % core in k:
            way = "backward-data" if "backward" in k else "forward"
            rows.setdefault((r["layer"], way), {})[core] = (r["ms"], r["gflops"])
            break
print("f32 GEMM cores (ms, TFLOP/s); the network uses Tiled (4x4) unless this says otherwise:")
for (layer, way), cores in rows.items():
    print("  %s %s: %s" % (layer, way, " | ".join("%s %.3f ms (%.1f TFLOP/s)" % (c, ms, g / 1e3)
                                               for c, (ms, g) in sorted(cores.items()))))
PY
fi

# Tiled evaluation (docs/MATHS.md): the same iteration at TILED_SIZE² at once and in blocks owning TILED_BLOCK px
# (both fit on an H100), in the same run; then the 8192² plan in the 8 GB default budget. Prints, e.g.,
# "tiled 2048²: at once 95.0 ms/it, in 4 blocks 210.0 ms/it (2.21x)".
TILED_SIZE=${TILED_SIZE:-2048}
TILED_BLOCK=${TILED_BLOCK:-1024}
echo "== tiled evaluation at ${TILED_SIZE}² (blocks of $TILED_BLOCK px) against at once"
tiled_json="$RESULTS/tiled-$TILED_SIZE.jsonl"
: > "$tiled_json"
for tile in "" "$TILED_BLOCK"; do
    "$BIN" bench --size "$TILED_SIZE" --iterations 5 ${tile:+--tile-size "$tile"} ${ADAPTER:+--adapter "$ADAPTER"} \
        >> "$tiled_json" 2>> "$RESULTS/tiled.err" || echo "  bench ${tile:+--tile-size $tile} FAILED: $(tail -n 1 "$RESULTS/tiled.err")"
done
"$BIN" bench --size 8192 --plan-only ${ADAPTER:+--adapter "$ADAPTER"} >> "$tiled_json" 2>> "$RESULTS/tiled.err"
"$PYTHON" - "$tiled_json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
runs = [r for r in rows if r.get("bench") == "iteration"]
if len(runs) == 2:
    a, t = runs
    print("  tiled %d²: at once %.1f ms/it, in %d blocks %.1f ms/it (%.2fx)" % (
        a["size"], a["steady_ms_per_iter"], t["blocks"], t["steady_ms_per_iter"],
        t["steady_ms_per_iter"] / a["steady_ms_per_iter"]))
for p in (r for r in rows if r.get("bench") == "plan"):
    print("  plan %d²: %d blocks of %d px (+%d), %.2f GB planned, at once %.2f GB, %.2fx the pixels" % (
        p["size"], p["blocks"], p["block_owned_px"], p["block_margin_px"], p["planned_bytes"] / 1e9,
        p["untiled_bytes"] / 1e9, p["overlap"]))
PY

# Spatial control (docs/MATHS.md, "Spatial control"): the same iteration with and without masks, interleaved in one
# run (`bench --masks`) at MASKS_SIZE² (default 512). Prints, e.g., "masks 512²: one style on half the image
# 1.03x unmasked; two styles on two halves + content mask 1.12x two blended".
MASKS_SIZE=${MASKS_SIZE:-512}
echo "== masks at ${MASKS_SIZE}² against unmasked, same run"
masks_json="$RESULTS/masks-$MASKS_SIZE.jsonl"
"$BIN" bench --masks --size "$MASKS_SIZE" --iterations 10 ${ADAPTER:+--adapter "$ADAPTER"} > "$masks_json" \
    2>> "$RESULTS/masks.err" || echo "  bench --masks FAILED: $(tail -n 1 "$RESULTS/masks.err")"
"$PYTHON" - "$masks_json" <<'PY'
import json, sys
for r in (json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")):
    c = r["cases"]
    print("  masks %d²: %s" % (r["size"], "; ".join("%s %.1f ms/it (%.2fx)" % (k["what"], k["ms_per_iter"], k["vs_unmasked"]) for k in c)))
PY

# Video (docs/MATHS.md, "Video"): the optical flow's accuracy on the GPU (tests/flow.rs prints each synthetic
# case's endpoint error, e.g. "subpixel translation: EPE 0.025 px"), then its time per pair at 1280 px (the photo
# against its painting, resized to the same size; `neural-style flow` prints "ms per pair: X (median of 20 …)").
# The flow tests run from the packed test executable (.gpu/tests/flow), else through cargo where there is one.
echo "== optical flow on the GPU"
FLOW_TESTS=${FLOW_TESTS:-$(first_existing .gpu/tests/flow)}
if [ -x "$FLOW_TESTS" ]; then
    "$FLOW_TESTS" --nocapture > "$RESULTS/flow-tests.log" 2>&1
else
    cargo test --release --test flow -- --nocapture > "$RESULTS/flow-tests.log" 2>&1
fi || echo "  flow tests FAILED (exit $?): $(grep -m1 -E "panicked|error" "$RESULTS/flow-tests.log")"
grep -E "EPE|test result" "$RESULTS/flow-tests.log" | sed 's/^/  /'
if "$BIN" flow examples/chelsea.png examples/chelsea_two_styles.png --size 1280 --repeat 20 -o "$RESULTS/flow-1280.flo" \
    ${ADAPTER:+--adapter "$ADAPTER"} > "$RESULTS/flow.log" 2>&1; then
    grep "ms per pair" "$RESULTS/flow.log" | sed 's/^/  flow /'
else
    echo "  flow FAILED: $(grep -v XDG_RUNTIME "$RESULTS/flow.log" | tail -n 1)"
fi

echo "== raw JSON lines: $ours $([ -s "$torch" ] && echo "$torch")"
echo
# The table also goes to $RESULTS/table.md, so it survives whatever happens to this terminal.
"$PYTHON" - "$ours" "$torch" "$torch_note" <<'PY' | tee "$RESULTS/table.md"
import json, sys

def load(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out

ours = load(sys.argv[1])
torch = load(sys.argv[2])
note = sys.argv[3]
modes = ["fp32_strict", "default_tf32_conv", "amp_bf16_channels_last"]
if any(r.get("mode") == "compiled_bf16_channels_last" for r in torch):
    modes.append("compiled_bf16_channels_last")
t = {(r["size"], r["mode"]): r for r in torch if r.get("what") == "torch_nst_iter"}
dev = next((r for r in torch if r.get("what") == "device"), None)
sgemm = next((r for r in torch if r.get("what") == "torch_sgemm_fp32_strict"), None)

adapters = sorted({r.get("adapter", "?") for r in ours if "adapter" in r})
print("our adapter:", ", ".join(adapters) or "?", "| clock:", ", ".join(sorted({r.get("clock", "?") for r in ours if "clock" in r})))
if dev:
    print("torch device:", dev.get("name"), "| torch", dev.get("torch"), "| cuDNN", dev.get("cudnn"),
          "| strict FP32 SGEMM %s TFLOP/s" % sgemm.get("tflops") if sgemm else "")
if any(r.get("device_type") == "Cpu" for r in ours):
    print("NOTE: our numbers are from a CPU adapter (lavapipe/llvmpipe): a smoke test, not GPU performance.")
print()

def ms(r):
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    return "%.2f" % r["ms_median"]

def ratio(a, r):
    if a is None or r is None or "error" in r or not r.get("ms_median"):
        return "—"
    return "%.2fx" % (a / r["ms_median"])

def gb(b):
    return "—" if b is None else "%.2f" % (b / 1e9)

short = {"fp32_strict": "fp32", "default_tf32_conv": "tf32", "amp_bf16_channels_last": "bf16",
         "compiled_bf16_channels_last": "compiled bf16"}
head = ["size", "ours ms", "ours TFLOP/s", *["torch %s ms" % short[m] for m in modes],
        *["ours/%s" % short[m] for m in modes], "ours GB (alloc.)", "torch peak GB", "waits/it (Adam, logged, L-BFGS)",
        "cmd buffers/it", "launches/it"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in sorted(ours, key=lambda r: r.get("size", 0)):
    s = r.get("size")
    a = None if "error" in r else r.get("ms_per_iter")
    rows = [t.get((s, m)) for m in modes]
    peaks = [x.get("peak_mem_mib") for x in rows if x and "peak_mem_mib" in x]
    torch_gb = "%.2f" % (max(peaks) * 2**20 / 1e9) if peaks else "—"
    cells = ["%d²" % s,
             r.get("error", "error")[:40] if a is None else "%.2f" % a,
             "—" if a is None else "%.3g" % (r.get("conv_gflops", 0) / 1e3),
             *[ms(x) for x in rows],
             *[ratio(a, x) for x in rows],
             "—" if a is None else gb(r.get("peak_gpu_bytes")),
             torch_gb,
             "—" if a is None else "%s, %s, %s" % (r.get("host_waits_per_iter", "?"), r.get("host_waits_per_logged_iter", "?"),
                                                   r.get("lbfgs", {}).get("host_waits_per_iter", "?")),
             "—" if a is None else str(r.get("command_buffers_per_iter", "?")),
             "—" if a is None else str(r.get("launches_per_iter", "?"))]
    print("| " + " | ".join(cells) + " |")
print()
print("ratio = our ms / PyTorch ms (below 1: we are faster). ours GB = allocation accounting of our buffers;")
print("torch peak GB = torch.cuda.max_memory_allocated over its three modes. TFLOP/s counts conv forward +")
print("backward-data only, as torch_baseline.py does. waits/it = times the host blocked on the GPU per iteration:")
print("Adam (losses not read), Adam with the losses read every iteration, L-BFGS (history 5). cmd buffers/it: 1, or")
print("one per VGG block once an iteration is measured over 250 ms (display watchdogs); launches/it: kernel launches")
print("per iteration, more than the dispatches where a large conv's pieces go apart on a slow adapter.")
if note:
    print(note + ": only our column is filled.")
print()
print("Top kernels per iteration (profiled iteration; %s):" % ", ".join(sorted({r.get("profile", {}).get("clock", "?") for r in ours if "profile" in r})))
for r in sorted(ours, key=lambda r: r.get("size", 0)):
    if "profile" not in r:
        continue
    top = r["profile"]["kernels"][:6]
    print("  %d²: " % r["size"] + ", ".join("%s %.2f ms (%d)" % (k["kernel"], k["ms"], k["dispatches"]) for k in top)
          + " | profiled total %.2f ms" % r["profile"]["total_ms"])
PY
echo
echo "gpu-bench: done in $(( $(date +%s) - bench_start )) s (results in $RESULTS)"
