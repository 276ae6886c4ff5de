#!/usr/bin/env python3
"""The bench-peer step (../shared/peers/torch_saliency_bench.py, copied beside this file) on
any torch device: ResNet-18 with the ImageNet stem at 3xSxS, B originals + their horizontal
flips, train-mode BatchNorm, plain SGD (lr 0.01). Step A = cross-entropy on both halves;
step B = plus L_sal (gradient maps, max of |gradient| over channels, min-max, MSE, flipped
back), through double backward. Times `iters` steps of each after `warmup`, synchronising
the device around every step, and prints one JSON object.

The model is torchvision's resnet18(num_classes=10) when torchvision imports, else the same
network built from the peer's BasicBlock (7x7/2 stem conv, BN, ReLU, 3x3/2 max pool, stages
of 2 blocks at 64/128/256/512, global average pool, linear)."""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_saliency_bench as peer  # noqa: E402


class ResNet18ImageNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            for s in [stride, 1]:
                layers.append(peer.BasicBlock(cin, planes, s, F.relu))
                cin = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        return self.fc(self.layers(x).mean(dim=(2, 3)))


def build():
    torch.manual_seed(0)
    try:
        import torchvision

        return torchvision.models.resnet18(num_classes=10), "torchvision.models.resnet18"
    except Exception:  # torchvision absent or broken: the same network from the peer's blocks
        return ResNet18ImageNet(10), "ResNet18ImageNet (peer BasicBlock)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64, help="originals per step (2x images)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    out = {"torch": torch.__version__, "device": str(dev), "size": args.size,
           "batch_originals": args.batch, "images_per_step": 2 * args.batch,
           "warmup": args.warmup, "iters": args.iters, "steps": {}}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        out["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    g = torch.Generator().manual_seed(0)
    xb = torch.randn((args.batch, 3, args.size, args.size), generator=g).to(dev)
    yb = torch.randint(0, 10, (args.batch,), generator=g).to(dev)
    for name, step in [("A", peer.step_a), ("B", peer.step_b)]:
        model, out["model"] = build()
        model = model.to(dev).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.0)
        for _ in range(args.warmup):
            step(model, opt, xb, yb)
        sync()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for _ in range(args.iters):
            sync()
            t0 = time.perf_counter()
            loss = step(model, opt, xb, yb)
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        out["steps"][name] = {
            "median_ms": statistics.median(times), "mean_ms": statistics.fmean(times),
            "min_ms": min(times), "max_ms": max(times), "times_ms": times,
            "final_loss": loss.item(),
        }
        if dev.type == "cuda":
            out["steps"][name]["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        del model, opt
    print(json.dumps(out))


if __name__ == "__main__":
    main()
