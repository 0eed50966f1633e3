#!/usr/bin/python3
"""Writes tests/data/weight_parity/: published-layout weight files whose numbers are known, read by
tests/io/name_map_test.cpp through the name maps (shared/specs/weights.md section 6).

Run with Debian's /usr/bin/python3 (python3-torch 1.13, numpy) from the repository root, after
scripts/make_resnet_fixtures.py, scripts/make_swin_fixtures.py and
scripts/make_lavt_ris_fixtures.py (their weights and outputs are reused, so the C++ test compares
against the originals' outputs already stored there):
    /usr/bin/python3 scripts/make_weight_parity_fixtures.py
Files:
  resnet_torchvision.pth   torch.save (zip) of the `bottleneck` trunk of tests/data/resnet under
                           torchvision's state_dict names, with num_batches_tracked and an fc head
  resnet_detectron2.pkl    the same weights renamed as detectron2's convert-torchvision-to-d2.py
                           does (stem.conv1.norm, res2.0.shortcut, stem.fc), numpy arrays in
                           {'model', '__author__': 'torchvision', 'matching_heuristics'}
  resnet_msra.pkl          the same conv weights under MSRA Caffe2 blob names ({'blobs': ...},
                           res2_0_branch2a_w; batch norm as scale/bias only, _momentum blobs)
  swin_official.pth        the whole Swin of tests/data/swin ('model.*') in the official layout:
                           {'model': ...} with head.*, the final norm, attn_mask buffers of the
                           shifted blocks and relative_position_index, as swin_*_22k.pth holds
  swin_torchvision.pth     the same weights under torchvision's names (features.*, flattened
                           relative_position_index, mlp.0/mlp.3)
  bert_hf.bin              tests/data/lavt_ris BERT in HuggingFace's BertForPreTraining layout,
                           legacy torch.save (as the 2018 pytorch_model.bin): 'bert.' prefix,
                           LayerNorm.gamma/beta, a pooler, cls.* heads with the decoder tied to
                           the word embeddings
  bert_hf.safetensors      the same as model.safetensors holds it (LayerNorm.weight/bias, no
                           tied decoder)
  swin_table.bin/.json     a [49, 2] relative position table (window 4) and the [25, 2] table
                           Swin's load_pretrained makes of it for window 3 (bicubic interpolate)
  mask2former_r50.json     names and shapes of Mask2Former's R50 COCO instance model
                           (model_final_3c8ec9.pkl), written from the spec's table (section 6f:
                           the model code's names; detectron2 is not packaged for Debian)
"""
import collections
import io
import json
import os
import pickle
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_weight_fixtures import st_encode  # noqa: E402  the spec-following safetensors writer
from tensor_fixture import write_fixture  # noqa: E402

DATA = os.path.join(HERE, '..', 'tests', 'data')
OUT = os.path.join(DATA, 'weight_parity')


def read_fixture(stem):
    """tests/data/<stem>.{bin,json} -> OrderedDict name -> float32 tensor."""
    index = json.load(open(os.path.join(DATA, stem + '.json')))
    raw = np.fromfile(os.path.join(DATA, stem + '.bin'), dtype='<f4')
    out = collections.OrderedDict()
    for name, e in index['tensors'].items():
        n = int(np.prod(e['shape'])) if e['shape'] else 1
        out[name] = torch.from_numpy(raw[e['offset']:e['offset'] + n].copy()).reshape(e['shape'])
    return out


def save(obj, name, legacy=False):
    path = os.path.join(OUT, name)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def resnet_files(gen):
    fixture = read_fixture('resnet/resnet')
    tv = collections.OrderedDict()
    outputs = {'input', 'stem', 'res2', 'res3', 'res4', 'res5'}
    for name, t in fixture.items():
        label, _, key = name.partition('.')
        if label != 'bottleneck' or key in outputs:
            continue
        tv[key] = t
        if key.endswith('running_var'):
            tv[key[:-len('running_var')] + 'num_batches_tracked'] = torch.tensor(7)
    channels = tv['layer4.0.conv3.weight'].shape[0]
    tv['fc.weight'] = torch.randn(10, channels, generator=gen)
    tv['fc.bias'] = torch.randn(10, generator=gen)
    save(tv, 'resnet_torchvision.pth')

    def d2_name(k):
        # The rules of detectron2's tools/convert-torchvision-to-d2.py.
        if not k.startswith('layer'):
            k = 'stem.' + k
        for t in [1, 2, 3, 4]:
            k = k.replace(f'layer{t}', f'res{t + 1}')
        for t in [1, 2, 3]:
            k = k.replace(f'bn{t}', f'conv{t}.norm')
        k = k.replace('downsample.0', 'shortcut')
        k = k.replace('downsample.1', 'shortcut.norm')
        return k
    d2 = {d2_name(k): v.numpy() for k, v in tv.items() if 'num_batches_tracked' not in k}
    with open(os.path.join(OUT, 'resnet_detectron2.pkl'), 'wb') as f:
        pickle.dump({'model': d2, '__author__': 'torchvision', 'matching_heuristics': True}, f,
                    protocol=2)

    def c2_name(k):
        # MSRA blob names (detectron2's c2 renaming rules, inverted).
        parts = k.split('.')
        if parts[0] == 'conv1':
            return 'conv1_w'
        if parts[0] == 'bn1':
            return {'weight': 'res_conv1_bn_s', 'bias': 'res_conv1_bn_b'}.get(parts[1])
        stage, block, layer = int(parts[0][5:]) + 1, parts[1], parts[2]
        leaf = parts[-1]
        prefix = f'res{stage}_{block}_'
        if layer == 'downsample':
            branch = 'branch1'
            is_bn = parts[3] == '1'
        else:
            branch = 'branch2' + 'abc'[int(layer[-1]) - 1]
            is_bn = layer.startswith('bn')
        if is_bn:
            return {'weight': prefix + branch + '_bn_s', 'bias': prefix + branch + '_bn_b'}.get(leaf)
        return prefix + branch + '_w'
    blobs = {}
    for k, v in tv.items():
        if k.startswith('fc') or 'running' in k or 'num_batches' in k:
            continue
        name = c2_name(k)
        if name is not None:
            blobs[name] = v.numpy()
            blobs[name + '_momentum'] = np.zeros_like(v.numpy())
    blobs['fc1000_w'] = tv['fc.weight'].numpy()
    with open(os.path.join(OUT, 'resnet_msra.pkl'), 'wb') as f:
        pickle.dump({'blobs': blobs}, f, protocol=2)


def relative_position_index(w):
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += w - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1)


def swin_files(gen):
    fixture = read_fixture('swin/swin')
    ours = collections.OrderedDict((k[len('model.'):], v) for k, v in fixture.items()
                                   if k.startswith('model.') and k.count('.') > 1)
    window, depths = 3, [2, 2, 2, 2]
    official = collections.OrderedDict()
    for k, v in ours.items():
        official[k.replace('norm3.', 'norm.')] = v
    for stage, depth in enumerate(depths):
        for block in range(depth):
            prefix = f'layers.{stage}.blocks.{block}.'
            official[prefix + 'attn.relative_position_index'] = relative_position_index(window)
            if block % 2 == 1:  # shifted blocks hold a mask sized by the training resolution
                official[prefix + 'attn_mask'] = torch.randn(4, window ** 2, window ** 2,
                                                             generator=gen)
    dim = ours['norm3.weight'].shape[0]
    official['head.weight'] = torch.randn(5, dim, generator=gen)
    official['head.bias'] = torch.randn(5, generator=gen)
    save({'model': official}, 'swin_official.pth')

    def tv_name(k):
        parts = k.split('.')
        if parts[0] == 'patch_embed':
            return {'proj': 'features.0.0.', 'norm': 'features.0.2.'}[parts[1]] + parts[2]
        if parts[0] == 'norm3':
            return 'norm.' + parts[1]
        stage = int(parts[1])
        if parts[2] == 'downsample':
            return f'features.{2 * stage + 2}.' + '.'.join(parts[3:])
        rest = '.'.join(parts[4:]).replace('mlp.fc1', 'mlp.0').replace('mlp.fc2', 'mlp.3')
        return f'features.{2 * stage + 1}.{parts[3]}.' + rest
    tv = collections.OrderedDict()
    for k, v in ours.items():
        if k.startswith('norm') and not k.startswith('norm3'):
            continue
        tv[tv_name(k)] = v
    for stage, depth in enumerate(depths):
        for block in range(depth):
            tv[f'features.{2 * stage + 1}.{block}.attn.relative_position_index'] = \
                relative_position_index(window).flatten()
    tv['head.weight'] = official['head.weight']
    tv['head.bias'] = official['head.bias']
    save(tv, 'swin_torchvision.pth')

    # Swin's load_pretrained resizes a table of another window bicubically.
    table = torch.randn(49, 2, generator=gen)
    resized = F.interpolate(table.permute(1, 0).view(1, 2, 7, 7), size=(5, 5),
                            mode='bicubic').view(2, 25).permute(1, 0).contiguous()
    write_fixture(OUT, 'swin_table', {'table': table, 'resized': resized},
                  {'from_window': 4, 'to_window': 3, 'torch': torch.__version__})


def bert_files(gen):
    ckpt = torch.load(os.path.join(DATA, 'lavt_ris', 'lavt_ris_tiny.pth'), map_location='cpu')
    bert = ckpt['bert_model']
    hidden = bert['embeddings.word_embeddings.weight'].shape[1]
    vocab = bert['embeddings.word_embeddings.weight'].shape[0]
    hf = collections.OrderedDict()
    for k, v in bert.items():
        k = k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias', 'LayerNorm.beta')
        hf['bert.' + k] = v
    hf['bert.pooler.dense.weight'] = torch.randn(hidden, hidden, generator=gen)
    hf['bert.pooler.dense.bias'] = torch.randn(hidden, generator=gen)
    hf['cls.predictions.bias'] = torch.randn(vocab, generator=gen)
    hf['cls.predictions.transform.dense.weight'] = torch.randn(hidden, hidden, generator=gen)
    hf['cls.predictions.transform.dense.bias'] = torch.randn(hidden, generator=gen)
    hf['cls.predictions.transform.LayerNorm.gamma'] = torch.randn(hidden, generator=gen)
    hf['cls.predictions.transform.LayerNorm.beta'] = torch.randn(hidden, generator=gen)
    hf['cls.predictions.decoder.weight'] = hf['bert.embeddings.word_embeddings.weight']  # tied
    hf['cls.seq_relationship.weight'] = torch.randn(2, hidden, generator=gen)
    hf['cls.seq_relationship.bias'] = torch.randn(2, generator=gen)
    save(hf, 'bert_hf.bin', legacy=True)
    modern = collections.OrderedDict()
    for k, v in hf.items():
        if k == 'cls.predictions.decoder.weight':
            continue  # safetensors cannot hold shared tensors; HF re-ties it
        k = k.replace('LayerNorm.gamma', 'LayerNorm.weight').replace('LayerNorm.beta', 'LayerNorm.bias')
        modern[k] = v.contiguous()
    with open(os.path.join(OUT, 'bert_hf.safetensors'), 'wb') as f:
        f.write(st_encode(modern, {'format': 'pt'}))


def mask2former_names():
    """model_final_3c8ec9.pkl's names and shapes: R50 (d2 names), hidden 256, 100 queries,
    80 classes, 6 encoder layers (8 heads, 3 levels, 4 points), 9 decoder layers."""
    names = collections.OrderedDict()
    names['backbone.stem.conv1.weight'] = [64, 3, 7, 7]
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
        names['backbone.stem.conv1.norm.' + leaf] = [64]
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
        for b in range(blocks):
            p = f'backbone.res{stage + 2}.{b}.'
            convs = [('conv1', [planes, inplanes, 1, 1]), ('conv2', [planes, planes, 3, 3]),
                     ('conv3', [planes * 4, planes, 1, 1])]
            if b == 0:
                convs.insert(0, ('shortcut', [planes * 4, inplanes, 1, 1]))
            for conv, shape in convs:
                names[p + conv + '.weight'] = shape
                for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
                    names[p + conv + '.norm.' + leaf] = [shape[0]]
            inplanes = planes * 4
    pd = 'sem_seg_head.pixel_decoder.'
    for i, c in enumerate([2048, 1024, 512]):
        names[pd + f'input_proj.{i}.0.weight'] = [256, c, 1, 1]
        names[pd + f'input_proj.{i}.0.bias'] = [256]
        names[pd + f'input_proj.{i}.1.weight'] = [256]
        names[pd + f'input_proj.{i}.1.bias'] = [256]
    names[pd + 'transformer.level_embed'] = [3, 256]
    for i in range(6):
        p = pd + f'transformer.encoder.layers.{i}.'
        for name, rows in [('sampling_offsets', 192), ('attention_weights', 96),
                           ('value_proj', 256), ('output_proj', 256)]:
            names[p + f'self_attn.{name}.weight'] = [rows, 256]
            names[p + f'self_attn.{name}.bias'] = [rows]
        names[p + 'norm1.weight'] = [256]
        names[p + 'norm1.bias'] = [256]
        names[p + 'linear1.weight'] = [1024, 256]
        names[p + 'linear1.bias'] = [1024]
        names[p + 'linear2.weight'] = [256, 1024]
        names[p + 'linear2.bias'] = [256]
        names[p + 'norm2.weight'] = [256]
        names[p + 'norm2.bias'] = [256]
    names[pd + 'mask_features.weight'] = [256, 256, 1, 1]
    names[pd + 'mask_features.bias'] = [256]
    names[pd + 'adapter_1.weight'] = [256, 256, 1, 1]
    names[pd + 'adapter_1.norm.weight'] = [256]
    names[pd + 'adapter_1.norm.bias'] = [256]
    names[pd + 'layer_1.weight'] = [256, 256, 3, 3]
    names[pd + 'layer_1.norm.weight'] = [256]
    names[pd + 'layer_1.norm.bias'] = [256]
    pr = 'sem_seg_head.predictor.'
    for i in range(9):
        for kind, attn in [('self', 'self_attn'), ('cross', 'multihead_attn')]:
            p = pr + f'transformer_{kind}_attention_layers.{i}.'
            names[p + f'{attn}.in_proj_weight'] = [768, 256]
            names[p + f'{attn}.in_proj_bias'] = [768]
            names[p + f'{attn}.out_proj.weight'] = [256, 256]
            names[p + f'{attn}.out_proj.bias'] = [256]
            names[p + 'norm.weight'] = [256]
            names[p + 'norm.bias'] = [256]
        p = pr + f'transformer_ffn_layers.{i}.'
        names[p + 'linear1.weight'] = [2048, 256]
        names[p + 'linear1.bias'] = [2048]
        names[p + 'linear2.weight'] = [256, 2048]
        names[p + 'linear2.bias'] = [256]
        names[p + 'norm.weight'] = [256]
        names[p + 'norm.bias'] = [256]
    names[pr + 'decoder_norm.weight'] = [256]
    names[pr + 'decoder_norm.bias'] = [256]
    names[pr + 'query_feat.weight'] = [100, 256]
    names[pr + 'query_embed.weight'] = [100, 256]
    names[pr + 'level_embed.weight'] = [3, 256]
    names[pr + 'class_embed.weight'] = [81, 256]
    names[pr + 'class_embed.bias'] = [81]
    for i in range(3):
        names[pr + f'mask_embed.layers.{i}.weight'] = [256, 256]
        names[pr + f'mask_embed.layers.{i}.bias'] = [256]
    names['criterion.empty_weight'] = [81]
    with open(os.path.join(OUT, 'mask2former_r50.json'), 'w') as f:
        f.write('{\n' + ',\n'.join(f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in names.items())
                + '\n}\n')


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20261202)
    resnet_files(gen)
    swin_files(gen)
    bert_files(gen)
    mask2former_names()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f'{len(os.listdir(OUT))} files, {total} bytes in {OUT}')


if __name__ == '__main__':
    main()
