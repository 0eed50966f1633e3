#!/usr/bin/python3
"""Writes the fixtures of tests/data/msdeform/ (read by tests/topdown/pixel_decoder_test.cpp).

Run with Debian's /usr/bin/python3 (python3-torch 1.13) from the repository root:
    /usr/bin/python3 scripts/make_msdeform_fixtures.py
The modules below are copied from facebookresearch/Mask2Former (ops/functions/ms_deform_attn_func.py
ms_deform_attn_core_pytorch, ops/modules/ms_deform_attn.py MSDeformAttn,
pixel_decoder/msdeformattn.py, transformer_decoder/position_encoding.py), with detectron2's
Conv2d(norm=, activation=) and c2_xavier_fill written out and the CUDA kernel replaced by the
PyTorch core (what the original runs on CPU). Three fixtures, fixed seed:
  core.*     ms_deform_attn_core_pytorch on random values, locations (some outside [0, 1]) and
             softmaxed weights;
  attn.*     a small MSDeformAttn (d_model 32, 3 levels, 4 heads, 3 points) with perturbed weights,
             run with 2-d and 4-d reference points and a padding mask;
  decoder.*  a small MSDeformAttnPixelDecoder (res2..res5 channels 6, 10, 12, 16; conv_dim 32,
             mask_dim 8, 2 layers, 4 heads, 2 points, ffn 48, GroupNorm(8); res3..res5 in the
             encoder as Mask2Former's config) with perturbed weights on odd sizes (a 52x68 image),
             its outputs, and the gradients of a fixed projection of them (sin(0.37 k + i)).
Every parameter is perturbed from the original's init (none stays an identity or zero that would
hide a mistake). The meta holds the paper-size decoder's parameter count for ResNet-50 inputs.
"""
import copy
import math
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.init import constant_, normal_, xavier_uniform_

from tensor_fixture import write_fixture

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'msdeform')


# ---- ops/functions/ms_deform_attn_func.py -------------------------------------------------------
def ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    N_, S_, M_, D_ = value.shape
    _, Lq_, M_, L_, P_, _ = sampling_locations.shape
    value_list = value.split([H_ * W_ for H_, W_ in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampling_value_list = []
    for lid_, (H_, W_) in enumerate(value_spatial_shapes):
        value_l_ = value_list[lid_].flatten(2).transpose(1, 2).reshape(N_*M_, D_, H_, W_)
        sampling_grid_l_ = sampling_grids[:, :, :, lid_].transpose(1, 2).flatten(0, 1)
        sampling_value_l_ = F.grid_sample(value_l_, sampling_grid_l_,
                                          mode='bilinear', padding_mode='zeros', align_corners=False)
        sampling_value_list.append(sampling_value_l_)
    attention_weights = attention_weights.transpose(1, 2).reshape(N_*M_, 1, Lq_, L_*P_)
    output = (torch.stack(sampling_value_list, dim=-2).flatten(-2) * attention_weights).sum(-1).view(N_, M_*D_, Lq_)
    return output.transpose(1, 2).contiguous()


# ---- ops/modules/ms_deform_attn.py --------------------------------------------------------------
class MSDeformAttn(nn.Module):
    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.im2col_step = 128
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self):
        constant_(self.sampling_offsets.weight.data, 0.)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid_init = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid_init = (grid_init / grid_init.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid_init[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias = nn.Parameter(grid_init.view(-1))
        constant_(self.attention_weights.weight.data, 0.)
        constant_(self.attention_weights.bias.data, 0.)
        xavier_uniform_(self.value_proj.weight.data)
        constant_(self.value_proj.bias.data, 0.)
        xavier_uniform_(self.output_proj.weight.data)
        constant_(self.output_proj.bias.data, 0.)

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes, input_level_start_index, input_padding_mask=None):
        N, Len_q, _ = query.shape
        N, Len_in, _ = input_flatten.shape
        assert (input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum() == Len_in
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], float(0))
        value = value.view(N, Len_in, self.n_heads, self.d_model // self.n_heads)
        sampling_offsets = self.sampling_offsets(query).view(N, Len_q, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = self.attention_weights(query).view(N, Len_q, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(N, Len_q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            sampling_locations = reference_points[:, :, None, :, None, :] \
                                 + sampling_offsets / offset_normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            sampling_locations = reference_points[:, :, None, :, None, :2] \
                                 + sampling_offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
        else:
            raise ValueError(reference_points.shape[-1])
        output = ms_deform_attn_core_pytorch(value, input_spatial_shapes, sampling_locations, attention_weights)
        output = self.output_proj(output)
        return output


# ---- transformer_decoder/position_encoding.py ---------------------------------------------------
class PositionEmbeddingSine(nn.Module):
    def __init__(self, num_pos_feats=64, temperature=10000, normalize=False, scale=None):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        if scale is None:
            scale = 2 * math.pi
        self.scale = scale

    def forward(self, x, mask=None):
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return pos


# ---- pixel_decoder/msdeformattn.py --------------------------------------------------------------
class MSDeformAttnTransformerEncoderOnly(nn.Module):
    def __init__(self, d_model=256, nhead=8, num_encoder_layers=6, dim_feedforward=1024, dropout=0.1,
                 activation="relu", num_feature_levels=4, enc_n_points=4):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        encoder_layer = MSDeformAttnTransformerEncoderLayer(d_model, dim_feedforward, dropout, activation,
                                                            num_feature_levels, nhead, enc_n_points)
        self.encoder = MSDeformAttnTransformerEncoder(encoder_layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.Tensor(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        normal_(self.level_embed)

    def get_valid_ratio(self, mask):
        _, H, W = mask.shape
        valid_H = torch.sum(~mask[:, :, 0], 1)
        valid_W = torch.sum(~mask[:, 0, :], 1)
        valid_ratio_h = valid_H.float() / H
        valid_ratio_w = valid_W.float() / W
        valid_ratio = torch.stack([valid_ratio_w, valid_ratio_h], -1)
        return valid_ratio

    def forward(self, srcs, pos_embeds):
        masks = [torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool) for x in srcs]
        src_flatten = []
        mask_flatten = []
        lvl_pos_embed_flatten = []
        spatial_shapes = []
        for lvl, (src, mask, pos_embed) in enumerate(zip(srcs, masks, pos_embeds)):
            bs, c, h, w = src.shape
            spatial_shape = (h, w)
            spatial_shapes.append(spatial_shape)
            src = src.flatten(2).transpose(1, 2)
            mask = mask.flatten(1)
            pos_embed = pos_embed.flatten(2).transpose(1, 2)
            lvl_pos_embed = pos_embed + self.level_embed[lvl].view(1, 1, -1)
            lvl_pos_embed_flatten.append(lvl_pos_embed)
            src_flatten.append(src)
            mask_flatten.append(mask)
        src_flatten = torch.cat(src_flatten, 1)
        mask_flatten = torch.cat(mask_flatten, 1)
        lvl_pos_embed_flatten = torch.cat(lvl_pos_embed_flatten, 1)
        spatial_shapes = torch.as_tensor(spatial_shapes, dtype=torch.long, device=src_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)
        memory = self.encoder(src_flatten, spatial_shapes, level_start_index, valid_ratios, lvl_pos_embed_flatten, mask_flatten)
        return memory, spatial_shapes, level_start_index


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, activation="relu", n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = F.relu
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    @staticmethod
    def with_pos_embed(tensor, pos):
        return tensor if pos is None else tensor + pos

    def forward_ffn(self, src):
        src2 = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        src = src + self.dropout3(src2)
        src = self.norm2(src)
        return src

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None):
        src2 = self.self_attn(self.with_pos_embed(src, pos), reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = src + self.dropout1(src2)
        src = self.norm1(src)
        src = self.forward_ffn(src)
        return src


class MSDeformAttnTransformerEncoder(nn.Module):
    def __init__(self, encoder_layer, num_layers):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(spatial_shapes, valid_ratios, device):
        reference_points_list = []
        for lvl, (H_, W_) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, H_ - 0.5, H_, dtype=torch.float32, device=device),
                                          torch.linspace(0.5, W_ - 0.5, W_, dtype=torch.float32, device=device))
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * H_)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * W_)
            ref = torch.stack((ref_x, ref_y), -1)
            reference_points_list.append(ref)
        reference_points = torch.cat(reference_points_list, 1)
        reference_points = reference_points[:, :, None] * valid_ratios[:, None]
        return reference_points

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos=None, padding_mask=None):
        output = src
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, device=src.device)
        for _, layer in enumerate(self.layers):
            output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return output


class Conv2d(nn.Conv2d):
    """detectron2.layers.Conv2d: a convolution followed by an optional norm and activation."""

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x):
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def c2_xavier_fill(module):
    """fvcore.nn.weight_init.c2_xavier_fill."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class MSDeformAttnPixelDecoder(nn.Module):
    """The original's constructor with input_shape as [(name, channels, stride)] and norm "GN"."""

    def __init__(self, input_shape, *, transformer_dropout, transformer_nheads, transformer_dim_feedforward,
                 transformer_enc_layers, conv_dim, mask_dim, transformer_in_features, common_stride,
                 enc_n_points=4, num_groups=32):
        super().__init__()
        transformer_input_shape = [s for s in input_shape if s[0] in transformer_in_features]
        input_shape = sorted(input_shape, key=lambda x: x[2])
        self.in_features = [k for k, _, _ in input_shape]
        self.feature_strides = [s for _, _, s in input_shape]
        self.feature_channels = [c for _, c, _ in input_shape]
        transformer_input_shape = sorted(transformer_input_shape, key=lambda x: x[2])
        self.transformer_in_features = [k for k, _, _ in transformer_input_shape]
        transformer_in_channels = [c for _, c, _ in transformer_input_shape]
        self.transformer_feature_strides = [s for _, _, s in transformer_input_shape]
        self.transformer_num_feature_levels = len(self.transformer_in_features)
        input_proj_list = []
        for in_channels in transformer_in_channels[::-1]:
            input_proj_list.append(nn.Sequential(
                nn.Conv2d(in_channels, conv_dim, kernel_size=1),
                nn.GroupNorm(num_groups, conv_dim),
            ))
        self.input_proj = nn.ModuleList(input_proj_list)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim, dropout=transformer_dropout, nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward, num_encoder_layers=transformer_enc_layers,
            num_feature_levels=self.transformer_num_feature_levels, enc_n_points=enc_n_points)
        N_steps = conv_dim // 2
        self.pe_layer = PositionEmbeddingSine(N_steps, normalize=True)
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1, stride=1, padding=0)
        c2_xavier_fill(self.mask_features)
        self.maskformer_num_feature_levels = 3
        self.common_stride = common_stride
        stride = min(self.transformer_feature_strides)
        self.num_fpn_levels = int(np.log2(stride) - np.log2(self.common_stride))
        lateral_convs = []
        output_convs = []
        for idx, in_channels in enumerate(self.feature_channels[:self.num_fpn_levels]):
            lateral_conv = Conv2d(in_channels, conv_dim, kernel_size=1, bias=False,
                                  norm=nn.GroupNorm(num_groups, conv_dim))
            output_conv = Conv2d(conv_dim, conv_dim, kernel_size=3, stride=1, padding=1, bias=False,
                                 norm=nn.GroupNorm(num_groups, conv_dim), activation=F.relu)
            c2_xavier_fill(lateral_conv)
            c2_xavier_fill(output_conv)
            self.add_module("adapter_{}".format(idx + 1), lateral_conv)
            self.add_module("layer_{}".format(idx + 1), output_conv)
            lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]

    def forward_features(self, features):
        srcs = []
        pos = []
        for idx, f in enumerate(self.transformer_in_features[::-1]):
            x = features[f].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        y, spatial_shapes, level_start_index = self.transformer(srcs, pos)
        bs = y.shape[0]
        split_size_or_sections = [None] * self.transformer_num_feature_levels
        for i in range(self.transformer_num_feature_levels):
            if i < self.transformer_num_feature_levels - 1:
                split_size_or_sections[i] = level_start_index[i + 1] - level_start_index[i]
            else:
                split_size_or_sections[i] = y.shape[1] - level_start_index[i]
        y = torch.split(y, split_size_or_sections, dim=1)
        out = []
        multi_scale_features = []
        num_cur_levels = 0
        for i, z in enumerate(y):
            out.append(z.transpose(1, 2).view(bs, -1, spatial_shapes[i][0], spatial_shapes[i][1]))
        for idx, f in enumerate(self.in_features[:self.num_fpn_levels][::-1]):
            x = features[f].float()
            lateral_conv = self.lateral_convs[idx]
            output_conv = self.output_convs[idx]
            cur_fpn = lateral_conv(x)
            y = cur_fpn + F.interpolate(out[-1], size=cur_fpn.shape[-2:], mode="bilinear", align_corners=False)
            y = output_conv(y)
            out.append(y)
        for o in out:
            if num_cur_levels < self.maskformer_num_feature_levels:
                multi_scale_features.append(o)
                num_cur_levels += 1
        return self.mask_features(out[-1]), out[0], multi_scale_features


# ---- fixtures -----------------------------------------------------------------------------------
tensors = {}


def put(name, tensor):
    assert name not in tensors, name
    tensors[name] = tensor.detach().to(torch.float32).contiguous().clone()


def perturb(module, scale=0.1):
    """Adds noise to every parameter: norms' affines, zero-initialised weights and biases all
    become non-trivial."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def put_state(prefix, module):
    for name, t in module.state_dict().items():
        put(f'{prefix}.{name}', t)
    return len(module.state_dict())


def make_core():
    N, M, D, Lq, P = 2, 3, 5, 7, 3
    shapes = [(6, 7), (3, 4), (2, 1)]
    S = sum(h * w for h, w in shapes)
    value = torch.randn(N, S, M, D)
    # Some locations fall outside [0, 1]: the zero padding is exercised too.
    locations = torch.rand(N, Lq, M, len(shapes), P, 2) * 1.4 - 0.2
    weights = torch.randn(N, Lq, M, len(shapes), P).flatten(-2).softmax(-1).view(N, Lq, M, len(shapes), P)
    put('core.value', value)
    put('core.sampling_locations', locations)
    put('core.attention_weights', weights)
    put('core.output', ms_deform_attn_core_pytorch(value, shapes, locations, weights))
    return {'spatial_shapes': shapes}


def make_attn():
    d_model, L, M, P, N, Lq = 32, 3, 4, 3, 2, 9
    shapes = [(5, 6), (3, 3), (1, 2)]
    S = sum(h * w for h, w in shapes)
    attn = MSDeformAttn(d_model, L, M, P)
    put('attn.init.sampling_offsets.bias', attn.sampling_offsets.bias)  # the original's grid
    perturb(attn)
    n_weights = put_state('attn', attn)
    query = torch.randn(N, Lq, d_model)
    inputs = torch.randn(N, S, d_model)
    ref2 = torch.rand(N, Lq, L, 2)
    ref4 = torch.cat([torch.rand(N, Lq, L, 2), 0.2 + 0.5 * torch.rand(N, Lq, L, 2)], -1)
    padding = torch.rand(N, S) < 0.2
    spatial = torch.as_tensor(shapes, dtype=torch.long)
    start = torch.cat((spatial.new_zeros((1,)), spatial.prod(1).cumsum(0)[:-1]))
    put('attn.query', query)
    put('attn.input_flatten', inputs)
    put('attn.reference_points2', ref2)
    put('attn.reference_points4', ref4)
    put('attn.padding_mask', padding.float())
    with torch.no_grad():
        put('attn.output2', attn(query, ref2, inputs, spatial, start))
        put('attn.output4', attn(query, ref4, inputs, spatial, start))
        put('attn.output2_masked', attn(query, ref2, inputs, spatial, start, padding))
    return {'d_model': d_model, 'n_levels': L, 'n_heads': M, 'n_points': P,
            'spatial_shapes': shapes, 'weights': n_weights}


def projection(n, i):
    return (torch.arange(n, dtype=torch.float32) * 0.37 + i).sin()


def make_decoder():
    channels = [6, 10, 12, 16]
    names = ['res2', 'res3', 'res4', 'res5']
    strides = [4, 8, 16, 32]
    config = dict(transformer_dropout=0.0, transformer_nheads=4, transformer_dim_feedforward=48,
                  transformer_enc_layers=2, conv_dim=32, mask_dim=8,
                  transformer_in_features=['res3', 'res4', 'res5'], common_stride=4, enc_n_points=2,
                  num_groups=8)
    decoder = MSDeformAttnPixelDecoder(list(zip(names, channels, strides)), **config)
    perturb(decoder)
    decoder.eval()
    n_weights = put_state('decoder', decoder)
    # A 52x68 image through ResNet's rounding-up strides: 13x17, 7x9, 4x5, 2x3.
    sizes = [(13, 17), (7, 9), (4, 5), (2, 3)]
    features = {}
    for name, c, (h, w) in zip(names, channels, sizes):
        features[name] = torch.randn(2, c, h, w, requires_grad=True)
        put(f'decoder.input.{name}', features[name])
    mask_features, _, multi_scale = decoder.forward_features(features)
    put('decoder.mask_features', mask_features)
    for i, m in enumerate(multi_scale):
        put(f'decoder.multi_scale.{i}', m)
    # Gradients of a fixed projection of every output (the C++ test builds the same one).
    loss = 0
    for i, y in enumerate([mask_features] + list(multi_scale)):
        r = projection(y.numel(), i).view_as(y)
        loss = loss + (y * r).sum()
    loss.backward()
    for name in names:
        put(f'decoder.grad.input.{name}', features[name].grad)
    watched = ['transformer.encoder.layers.0.self_attn.sampling_offsets.weight',
               'transformer.encoder.layers.1.self_attn.attention_weights.weight',
               'transformer.level_embed', 'input_proj.0.0.weight', 'adapter_1.weight',
               'layer_1.norm.weight', 'mask_features.bias']
    params = dict(decoder.named_parameters())
    for name in watched:
        put(f'decoder.grad.param.{name}', params[name].grad)
    return {'in_channels': channels, 'in_strides': strides, 'sizes': sizes, 'weights': n_weights,
            'grad_params': watched, **config}


def paper_size_count():
    """MSDeformAttnPixelDecoder for ResNet-50's res2..res5 with Mask2Former's config."""
    decoder = MSDeformAttnPixelDecoder(
        list(zip(['res2', 'res3', 'res4', 'res5'], [256, 512, 1024, 2048], [4, 8, 16, 32])),
        transformer_dropout=0.0, transformer_nheads=8, transformer_dim_feedforward=1024,
        transformer_enc_layers=6, conv_dim=256, mask_dim=256,
        transformer_in_features=['res3', 'res4', 'res5'], common_stride=4)
    return sum(p.numel() for p in decoder.parameters())


def main():
    torch.manual_seed(20261126)
    meta = {'torch': torch.__version__, 'core': make_core(), 'attn': make_attn(),
            'decoder': make_decoder(), 'resnet50_decoder_parameters': paper_size_count()}
    print('paper-size decoder parameters:', meta['resnet50_decoder_parameters'])
    write_fixture(OUT, 'msdeform', tensors, meta)


if __name__ == '__main__':
    main()
