#!/usr/bin/env python3
"""Writes a torchvision model with seeded random weights for `torchvision_parity.rs`.

Usage: torchvision_parity.py OUT_DIR ARCH   (ARCH: a torchvision name salaug maps, e.g. resnet18)

OUT_DIR gets weights.pth (torch.save of the state_dict), weights.safetensors (the same
state_dict through safetensors.torch.save_file) and io.safetensors: "x", 8 images
[8, 3, 224, 224] (already normalised), and "logits", the model's eval-mode outputs on them.
Nothing is downloaded: the weights are torchvision's own initialisation under a fixed seed,
with BatchNorm's affine parameters and running statistics drawn away from their defaults so
that evaluation mode is tested.
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file


def main() -> None:
    out, arch = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.4, 0.9)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
    state = model.state_dict()
    torch.save(state, f"{out}/weights.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, f"{out}/weights.safetensors")
    save_file({"x": x.contiguous(), "logits": logits.contiguous()}, f"{out}/io.safetensors")
    print(f"{arch}: torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{len(state)} keys, |logit| up to {logits.abs().max().item():.3f}")


if __name__ == "__main__":
    main()
