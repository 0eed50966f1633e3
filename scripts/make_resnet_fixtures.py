#!/usr/bin/python3
"""Writes the ResNet fixtures of tests/data/resnet/ (read by tests/backbones/resnet_test.cpp).

Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-torchvision 0.14) from the
repository root:
    /usr/bin/python3 scripts/make_resnet_fixtures.py
Two narrow trunks are built from torchvision's own ResNet._make_layer, BasicBlock and Bottleneck
(torchvision fixes the stem at 64 channels; a full resnet18 is 45 MB of weights, so the stem and
stage widths are reduced: `width` replaces 64), with a fixed seed. Every batch norm gets random
weight, bias, running mean and running variance (none is an identity that would hide a mistake);
inputs run through them in eval mode (and the basic one once in training mode, batch statistics),
and the weights (state_dict names, num_batches_tracked left out), inputs and the stem and res2..res5
outputs are written as one raw little-endian float32 file (resnet.bin) with a JSON index
(resnet.json): {"tensors": {name: {"shape": [...], "offset": <in floats>}}, "meta": {}}.
The meta holds torchvision resnet50's state_dict names and shapes and its parameter count without
fc, for the C++ naming and counting tests.
"""
import copy
import os

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, resnet50

from tensor_fixture import write_fixture

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'resnet')

tensors = {}
weight_counts = {}  # label -> number of state_dict entries written


def put(name, tensor):
    assert name not in tensors, name
    tensors[name] = tensor.detach().to(torch.float32).contiguous().clone()


class NarrowResNet(ResNet):
    """torchvision's ResNet with `width` stem channels and res2 planes instead of 64."""

    def __init__(self, block, layers, width):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck's inner width = planes
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)

    def stages(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


def randomise_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn_like(m.weight))
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def make(label, block, layers, width, input_shape, train_too=False):
    model = NarrowResNet(block, layers, width)
    randomise_norms(model)
    model.eval()
    weight_counts[label] = 0
    for name, t in model.state_dict().items():
        if not name.endswith('num_batches_tracked'):
            put(f'{label}.{name}', t)
            weight_counts[label] += 1
    x = torch.randn(*input_shape)
    put(f'{label}.input', x)
    with torch.no_grad():
        outs = model.stages(x)
    for name, y in zip(('stem', 'res2', 'res3', 'res4', 'res5'), outs):
        put(f'{label}.{name}', y)
    if train_too:
        trained = copy.deepcopy(model).train()
        with torch.no_grad():
            outs = trained.stages(x)
        put(f'{label}.train_res5', outs[-1])


def main():
    torch.manual_seed(20261125)
    # Basic blocks, two in the first two stages (identity and downsample shortcuts).
    make('basic', BasicBlock, [2, 2, 1, 1], 8, (2, 3, 67, 45), train_too=True)
    # Bottlenecks (stride on the 3x3, a downsample already in layer1: 4 -> 16 channels).
    make('bottleneck', Bottleneck, [2, 1, 1, 1], 4, (1, 3, 64, 80))
    r50 = resnet50()
    meta = {
        'torch': torch.__version__,
        'weights': weight_counts,
        'resnet50_without_fc': sum(p.numel() for n, p in r50.named_parameters()
                                   if not n.startswith('fc.')),
        'resnet50_state_dict': {n: list(t.shape) for n, t in r50.state_dict().items()
                                if not n.startswith('fc.')},
    }
    write_fixture(OUT, 'resnet', tensors, meta)


if __name__ == '__main__':
    main()
