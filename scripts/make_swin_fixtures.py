#!/usr/bin/python3
"""Writes the Swin Transformer fixtures of tests/data/swin/ (read by tests/backbones/swin_test.cpp).

Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-torchvision 0.14) from the
repository root:
    /usr/bin/python3 scripts/make_swin_fixtures.py
torchvision's Swin pieces are built with a fixed seed at small sizes, every parameter is
randomised (LayerNorm affines and the relative position bias table included, so none of them is
an identity or zero that would hide a mistake), inputs are run through them in eval mode, and the
weights, inputs and outputs are written as one raw little-endian float32 file (swin.bin) with a
JSON index (swin.json): {"tensors": {name: {"shape": [...], "offset": <in floats>}}, "meta": {}}.

Weights are stored under the names of the original Swin / LAVT state_dict (mlp.fc1, not
torchvision's mlp.0; layers.N.downsample, not features.2N+2), which is what our modules use, so
the test loads them by name. Feature maps are stored channels-last as torchvision returns them.
"""
import os

import numpy as np
import torch
from torchvision.models.swin_transformer import (PatchMerging, ShiftedWindowAttention,
                                                 SwinTransformer, SwinTransformerBlock)

from tensor_fixture import write_fixture

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'swin')

tensors = {}


def put(name, tensor):
    assert name not in tensors, name
    tensors[name] = tensor.detach().to(torch.float32).contiguous().clone()


def randomise(module):
    """Every parameter random: LayerNorm weights near 1, the rest small, bias tables larger."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith('relative_position_bias_table'):
                p.normal_(0.0, 0.5)
            elif ('norm' in name or name.startswith('features.0.2')) and name.endswith('weight'):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith('bias'):
                p.normal_(0.0, 0.1)
            else:
                fan_in = p.shape[1] if p.dim() == 2 else p[0].numel()
                p.normal_(0.0, 1.0 / fan_in ** 0.5)


def block_name(tv_name):
    """torchvision block parameter name -> original Swin name."""
    return tv_name.replace('mlp.0.', 'mlp.fc1.').replace('mlp.3.', 'mlp.fc2.')


def put_block(prefix, block):
    for name, p in block.named_parameters():
        put(prefix + block_name(name), p)


def make_blocks():
    # One plain and one shifted block, dim 32, 2 heads, window 4, on an 8 x 8 map (divisible by
    # the window, larger than it: torchvision and the original agree there).
    for label, shift in (('block_plain', 0), ('block_shifted', 2)):
        block = SwinTransformerBlock(32, 2, window_size=[4, 4], shift_size=[shift, shift],
                                     stochastic_depth_prob=0.0).eval()
        randomise(block)
        x = torch.randn(2, 8, 8, 32)
        with torch.no_grad():
            y = block(x)
        put_block(label + '.', block)
        put(label + '.input', x)
        put(label + '.output', y)


def make_attention():
    # Window attention alone (no shift): dim 16, 4 heads, window 3, on a 6 x 6 map.
    attn = ShiftedWindowAttention(16, [3, 3], [0, 0], 4).eval()
    randomise(attn)
    x = torch.randn(2, 6, 6, 16)
    with torch.no_grad():
        y = attn(x)
    for name, p in attn.named_parameters():
        put('attn.' + name, p)
    put('attn.input', x)
    put('attn.output', y)


def make_merging():
    merge = PatchMerging(8).eval()
    randomise(merge)
    for name, p in merge.named_parameters():
        put('merge.' + name, p)
    for label, (h, w) in (('even', (6, 4)), ('odd', (5, 7))):
        x = torch.randn(2, h, w, 8)
        with torch.no_grad():
            y = merge(x)
        put(f'merge.{label}.input', x)
        put(f'merge.{label}.output', y)


def model_name(tv_name):
    """torchvision SwinTransformer parameter name -> original Swin backbone name."""
    parts = tv_name.split('.')
    if parts[0] == 'norm':
        return 'norm3.' + parts[1]
    assert parts[0] == 'features'
    index = int(parts[1])
    if index == 0:
        return {'0': 'patch_embed.proj.', '2': 'patch_embed.norm.'}[parts[2]] + parts[3]
    if index % 2 == 1:  # a stage of blocks
        stage = (index - 1) // 2
        return block_name(f'layers.{stage}.blocks.' + '.'.join(parts[2:]))
    stage = (index - 2) // 2
    return f'layers.{stage}.downsample.' + '.'.join(parts[2:])


def make_model():
    # A whole tiny Swin: embed 6, depths 2 2 2 2, heads 1 2 3 6, window 3, on a 120 x 136 image.
    # Maps 30x34, 15x17, 8x9, 4x5: every one larger than the window (torchvision keeps the shift)
    # and most not divisible by it (padding, and the shift mask over the padded map, are tested).
    model = SwinTransformer(patch_size=[4, 4], embed_dim=6, depths=[2, 2, 2, 2],
                            num_heads=[1, 2, 3, 6], window_size=[3, 3],
                            stochastic_depth_prob=0.0, num_classes=1).eval()
    randomise(model)
    for name, p in model.named_parameters():
        if not name.startswith('head.'):
            put('model.' + model_name(name), p)
    x = torch.randn(1, 3, 120, 136)
    put('model.input', x)
    with torch.no_grad():
        h = x
        for index, layer in enumerate(model.features):
            h = layer(h)
            if index % 2 == 1:
                put(f'model.stage{(index - 1) // 2}', h)  # blocks' output, before any norm
        put('model.output3', model.norm(h))


def swin_b_window12_count():
    model = SwinTransformer(patch_size=[4, 4], embed_dim=128, depths=[2, 2, 18, 2],
                            num_heads=[4, 8, 16, 32], window_size=[12, 12],
                            stochastic_depth_prob=0.5)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    return total - head


def main():
    torch.manual_seed(20240611)
    make_blocks()
    make_attention()
    make_merging()
    make_model()
    meta = {
        'torch': torch.__version__,
        # torchvision SwinTransformer(embed 128, depths 2 2 18 2, heads 4 8 16 32, window 12):
        # parameters without the classifier head (it has one final norm, not four).
        'swin_b_window12_torchvision_without_head': swin_b_window12_count(),
    }
    write_fixture(OUT, 'swin', tensors, meta)


if __name__ == '__main__':
    main()
