#!/usr/bin/python3
"""Writes the fixtures of tests/data/m2f_decoder/ (read by tests/topdown/transformer_decoder_test.cpp).

Run with Debian's /usr/bin/python3 (python3-torch 1.13) from the repository root:
    /usr/bin/python3 scripts/make_m2f_decoder_fixtures.py
A reference of Mask2Former's MultiScaleMaskedTransformerDecoder (facebookresearch/Mask2Former,
mask2former_transformer_decoder.py) in its own layout (sequence first, as the original), built on
torch's nn.MultiheadAttention with the per-head bool mask the original repeats, nn.LayerNorm and
F.interpolate, and DETR's PositionEmbeddingSine(normalize=True). Two small decoders with random
weights (every norm, bias and embedding non-trivial, state_dict names as the original's) run on
random inputs: `post` (in_channels == hidden: identity input projection, post-norm, 4 blocks so the
levels cycle) and `pre` (in_channels != hidden: 1x1 convolution input projections, pre-norm, 2
blocks). A constant channel in mask_features gives each query a mask offset, so that the masks
block some keys of every level and some rows block everything (counts in the meta).
"""
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from tensor_fixture import write_fixture

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'm2f_decoder')


def sine_position(x, num_pos_feats, temperature=10000, scale=2 * math.pi):
    not_mask = torch.ones((x.size(0), x.size(2), x.size(3)), dtype=torch.bool)
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    eps = 1e-6
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class Attn(nn.Module):
    """Holds the attention as `self_attn` or `multihead_attn` plus `norm`."""

    def __init__(self, name, d, heads, pre):
        super().__init__()
        setattr(self, name, nn.MultiheadAttention(d, heads, dropout=0.0))
        self.name = name
        self.norm = nn.LayerNorm(d)
        self.pre = pre

    def forward(self, tgt, memory, mask, pos, query_pos):
        attn = getattr(self, self.name)
        if self.pre:
            t = self.norm(tgt)
            return tgt + attn(t + query_pos, memory(t) + pos, memory(t), attn_mask=mask)[0]
        out = attn(tgt + query_pos, memory(tgt) + pos, memory(tgt), attn_mask=mask)[0]
        return self.norm(tgt + out)


class Ffn(nn.Module):
    def __init__(self, d, ffn, pre):
        super().__init__()
        self.linear1, self.linear2, self.norm, self.pre = nn.Linear(d, ffn), nn.Linear(ffn, d), nn.LayerNorm(d), pre

    def forward(self, x):
        if self.pre:
            return x + self.linear2(F.relu(self.linear1(self.norm(x))))
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class Mlp(nn.Module):
    def __init__(self, i, h, o, n):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip([i] + [h] * (n - 1), [h] * (n - 1) + [o]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


class Decoder(nn.Module):
    def __init__(self, in_ch, d, queries, heads, ffn, layers, mask_dim, classes, pre):
        super().__init__()
        self.heads, self.layers = heads, layers
        self.transformer_self_attention_layers = nn.ModuleList(Attn('self_attn', d, heads, pre) for _ in range(layers))
        self.transformer_cross_attention_layers = nn.ModuleList(Attn('multihead_attn', d, heads, pre) for _ in range(layers))
        self.transformer_ffn_layers = nn.ModuleList(Ffn(d, ffn, pre) for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.query_feat = nn.Embedding(queries, d)
        self.query_embed = nn.Embedding(queries, d)
        self.level_embed = nn.Embedding(3, d)
        self.input_proj = nn.ModuleList(nn.Conv2d(in_ch, d, 1) for _ in range(3)) if in_ch != d else None
        self.class_embed = nn.Linear(d, classes + 1)
        self.mask_embed = Mlp(d, d, mask_dim, 3)
        self.stats = []

    def heads_(self, output, mask_features, size):
        out = self.decoder_norm(output).transpose(0, 1)
        cls = self.class_embed(out)
        masks = torch.einsum('bqc,bchw->bqhw', self.mask_embed(out), mask_features)
        m = F.interpolate(masks, size=size, mode='bilinear', align_corners=False)
        m = (m.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.heads, 1, 1).flatten(0, 1) < 0.5).bool()
        return cls, masks, m.detach(), out

    def forward(self, x, mask_features):
        src, pos, sizes = [], [], []
        for i in range(3):
            sizes.append(x[i].shape[-2:])
            pos.append(sine_position(x[i], self.query_feat.weight.shape[1] // 2).flatten(2).permute(2, 0, 1))
            proj = self.input_proj[i](x[i]) if self.input_proj is not None else x[i]
            src.append((proj.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        bs = x[0].shape[0]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, bs, 1)
        cls, masks, attn, q = self.heads_(output, mask_features, sizes[0])
        preds = [(cls, masks)]
        for i in range(self.layers):
            lvl = i % 3
            full = attn.sum(-1) == attn.shape[-1]
            self.stats.append((attn.float().mean().item(), int(full.sum().item()) // self.heads))
            attn[torch.where(full)] = False
            output = self.transformer_cross_attention_layers[i](output, lambda _: src[lvl], attn, pos[lvl], query_pos)
            output = self.transformer_self_attention_layers[i](output, lambda t: t, None, query_pos, query_pos)
            output = self.transformer_ffn_layers[i](output)
            cls, masks, attn, q = self.heads_(output, mask_features, sizes[(i + 1) % 3])
            preds.append((cls, masks))
        return preds, q


def randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('norm.weight'):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith('bias'):
                p.normal_(0.0, 0.1)
        # mask_embed's first output meets the constant channel of mask_features: a large offset
        # per query, negative for about half of them (their masks then block every key).
        layers = model.mask_embed.layers
        layers[2].weight[0] *= 6.0
        h = F.relu(layers[1](F.relu(layers[0](model.decoder_norm(model.query_feat.weight)))))
        layers[2].bias[0] = -(h @ layers[2].weight[0]).median()


def make(label, in_ch, d, queries, heads, ffn, layers, mask_dim, classes, pre, batch, sizes, mask_size, offset):
    model = Decoder(in_ch, d, queries, heads, ffn, layers, mask_dim, classes, pre)
    randomise(model)
    model.eval()
    x = [torch.randn(batch, in_ch, h, w) for h, w in sizes]
    mask_features = torch.randn(batch, mask_dim, *mask_size)
    mask_features[:, 0] = offset  # see randomise
    with torch.no_grad():
        preds, q = model(x, mask_features)
    tensors = {}
    for name, t in model.state_dict().items():
        tensors[f'{label}.weights.{name}'] = t
    for i, t in enumerate(x):
        tensors[f'{label}.input.{i}'] = t
    tensors[f'{label}.mask_features'] = mask_features
    for i, (c, m) in enumerate(preds):
        tensors[f'{label}.class.{i}'] = c
        tensors[f'{label}.mask.{i}'] = m
    tensors[f'{label}.queries'] = q
    meta = {'in_channels': in_ch, 'hidden_dim': d, 'num_queries': queries, 'num_heads': heads,
            'ffn_dim': ffn, 'num_layers': layers, 'mask_dim': mask_dim, 'num_classes': classes,
            'pre_norm': pre,
            'blocked_fraction': [s[0] for s in model.stats],
            'fully_blocked_rows': [s[1] for s in model.stats]}
    print(label, meta['blocked_fraction'], meta['fully_blocked_rows'])
    return {k: v.detach().float().contiguous() for k, v in tensors.items()}, meta


def main():
    torch.manual_seed(0)
    tensors, meta = {}, {}
    for label, args in [
            ('post', dict(in_ch=16, d=16, queries=6, heads=2, ffn=24, layers=4, mask_dim=8, classes=5, pre=False,
                          batch=2, sizes=[(3, 4), (5, 6), (8, 9)], mask_size=(12, 14), offset=3.0)),
            ('pre', dict(in_ch=12, d=16, queries=5, heads=4, ffn=20, layers=2, mask_dim=8, classes=3, pre=True,
                         batch=2, sizes=[(2, 3), (4, 5), (7, 6)], mask_size=(10, 11), offset=3.0))]:
        t, m = make(label, **args)
        tensors.update(t)
        meta[label] = m
    write_fixture(OUT, 'm2f_decoder', tensors, meta)


if __name__ == '__main__':
    main()
