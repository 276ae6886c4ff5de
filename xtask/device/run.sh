#!/usr/bin/env bash
# salaug on a borrowed GPU machine (no Rust, no network), in at most 8 minutes: packed by
# `cargo xtask device-bundle`, run as `bash run.sh OUTDIR` from anywhere.
#
#   1. parity: one training step (losses and every parameter's gradient) of the CUDA build
#      against the CPU (flex) build from the same weights and batch: the small CNN
#      (configs/ci-fmnist.toml, sal) and the small-image ResNet-18 (3x32x32, sal);
#   2. `salaug time` of ResNet-18 (ImageNet stem) at 3x224x224, batch 64 (+64 flipped), ref
#      and sal, T(x) outside the timer (the paper's table 4 protocol; configs/bench-peer.toml);
#   3. the same two steps in the machine's own PyTorch (torch_gpu_step.py);
#   4. one Table-1 cell trained on the GPU: configs/cpu-base.toml, horizontal flip p = 0.5,
#      ref and sal, seed 0 (the --cpu table's cell, on 12,000 training images' subset).
#
# Every stage runs under `timeout` within one deadline (DEADLINE_S, default 470 s), writes
# OUTDIR/<stage>.out/.err and one line of OUTDIR/status.txt (`stage rc seconds`); a failed
# stage does not stop the later ones. Large files (step records) go to $WORK, not OUTDIR.
#
# Without a GPU (what CI-size machines can check): SALAUG_GPU_BIN=<an unpacked salaug-flex>,
# TORCH_DEVICE=cpu and smaller SIZE/BATCH/ITERS/CELL_TRAIN run the same script on the CPU.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?usage: run.sh OUTDIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="${WORK:-${TMPDIR:-/tmp}/salaug-device}"
mkdir -p "$WORK/bin"
# unpack NAME: the bundle's bin/NAME.gz unpacked to $WORK/bin/NAME (the working tree stays small).
unpack() {
    gzip -dc "$HERE/bin/$1.gz" > "$WORK/bin/$1.part" && chmod +x "$WORK/bin/$1.part" &&
        mv "$WORK/bin/$1.part" "$WORK/bin/$1" && echo "$WORK/bin/$1"
}
GPU_BIN="${SALAUG_GPU_BIN:-$(unpack salaug-cuda)}"
CPU_BIN="${SALAUG_CPU_BIN:-$(unpack salaug-flex)}"
GPU_DEVICE="${GPU_DEVICE:-default}"
TORCH_DEVICE="${TORCH_DEVICE:-cuda}"
PYTHON="${PYTHON:-python3}"
SIZE="${SIZE:-224}"
BATCH="${BATCH:-64}"
WARMUP="${WARMUP:-10}"
ITERS="${ITERS:-20}"
CELL_TRAIN="${CELL_TRAIN:-8000}"
CELL_TEST="${CELL_TEST:-2000}"
DEADLINE_S="${DEADLINE_S:-470}"
export SALAUG_DATA="$HERE/data"
export RUST_LOG="${RUST_LOG:-info}"
cd "$HERE"

START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[$(elapsed)s] $*" | tee -a "$OUT/run.log"; }

# stage NAME LIMIT_S COMMAND...: runs COMMAND under the smaller of LIMIT_S and what is left.
stage() {
    local name="$1" limit="$2"
    shift 2
    local left=$(( DEADLINE_S - $(elapsed) ))
    if [ "$left" -lt 5 ]; then
        log "skip $name: the deadline has passed"
        echo "$name skipped 0" >> "$OUT/status.txt"
        return 124
    fi
    [ "$limit" -gt "$left" ] && limit="$left"
    log "start $name (limit ${limit}s): $*"
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    local rc=$?
    log "end $name: rc $rc after $(( $(date +%s) - t0 ))s"
    echo "$name $rc $(( $(date +%s) - t0 ))" >> "$OUT/status.txt"
    return $rc
}

: > "$OUT/status.txt"
log "bundle $HERE, gpu binary $GPU_BIN (device $GPU_DEVICE), cpu binary $CPU_BIN"
{
    date -u
    uname -a
    nproc
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda)' 2>&1
    ls -l "$HERE/bin" "$WORK/bin"
} > "$OUT/machine.txt" 2>&1

# 1. Parity of one training step.
R18_32=(--set model.arch=resnet18 --set data.pad_to=32 --set data.rgb=true
        --set model.stem=small --set train.batch_size=16)
parity() {
    local name="$1" config="$2"
    shift 2
    stage "parity-$name-cpu" 90 "$CPU_BIN" step --config "$config" "$@" \
        --out "$WORK/$name-cpu.safetensors" &&
    stage "parity-$name-gpu" 150 "$GPU_BIN" step --config "$config" "$@" --device "$GPU_DEVICE" \
        --against "$WORK/$name-cpu.safetensors" --out "$WORK/$name-gpu.safetensors"
}
parity small configs/ci-fmnist.toml --set 'train.strategy="sal"'
parity resnet18 configs/bench-peer.toml "${R18_32[@]}"

# 2. Table 4: ResNet-18 at SIZE x SIZE, batch BATCH, ref and sal.
R18=(--set model.arch=resnet18 --set data.pad_to=32 --set "data.resize_to=$SIZE"
     --set data.rgb=true --set model.stem=imagenet --set "train.batch_size=$BATCH"
     --set "data.train_limit=$BATCH")
for strategy in ref sal; do
    stage "time-resnet18-$strategy" 150 "$GPU_BIN" time --config configs/bench-peer.toml \
        "${R18[@]}" --set "train.strategy=\"$strategy\"" \
        --warmup "$WARMUP" --iters "$ITERS" --exclude-transform
done

# 3. The same step in PyTorch.
stage torch-resnet18 120 "$PYTHON" torch_gpu_step.py --device "$TORCH_DEVICE" --size "$SIZE" \
    --batch "$BATCH" --warmup "$WARMUP" --iters "$ITERS"

# 4. One Table-1 cell on the GPU.
for strategy in ref sal; do
    rm -rf "$WORK/cell-$strategy"
    stage "cell-$strategy" 150 "$GPU_BIN" train --config configs/cpu-base.toml \
        --set 'augment.kind="horizontal_flip"' --set augment.p=0.5 \
        --set "train.strategy=\"$strategy\"" --set "data.train_limit=$CELL_TRAIN" \
        --set "data.test_limit=$CELL_TEST" --devices "$GPU_DEVICE" --out "$WORK/cell-$strategy"
    for f in metrics.csv result.csv config.toml train.log; do
        [ -f "$WORK/cell-$strategy/$f" ] && cp "$WORK/cell-$strategy/$f" "$OUT/cell-$strategy.$f"
    done
done

log "done in $(elapsed)s"
cat "$OUT/status.txt"
