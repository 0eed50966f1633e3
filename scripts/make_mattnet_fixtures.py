#!/usr/bin/python3
"""Writes the fixtures of tests/data/mattnet/ (read by tests/topdown/mattnet_parity_test.cpp).

Run with Debian's /usr/bin/python3 (python3-torch 1.13) from the repository root, given a checkout
of lichengunc/MAttNet (not part of this project):
    /usr/bin/python3 scripts/make_mattnet_fixtures.py /path/to/MAttNet
It imports the original's own JointMatching (lib/layers/joint_match.py, with its lang_encoder.py
and visual_encoder.py), MaxMarginCriterion (lib/crits/max_margin_crit.py) and the attribute loss
of tools/train.py (BCEWithLogitsLoss weighted as GtMRCNLoader.get_attribute_weights), builds a
small model with random weights (every norm scale, bias and batch-norm statistic non-trivial;
dropout 0 so that training mode is deterministic) and runs it on random MAttNet inputs:
  - eval:  scores, sub_grid_attn, sub/loc/rel_attn, rel_ixs, weights, att_scores;
  - train: the original's training pass on [positives; visual negatives; language negatives]
           (3 x 4 rows, one batch-norm pass), its loss (ranking + attribute BCE on the
           positives that have attributes), every parameter's gradient and the batch-norm
           running statistics after the pass.
Every context slot is real (the original masks padded contexts to a cosine of 0, which our
matcher leaves out instead: docs/design.md).
It also writes `roi.*`: torchvision.ops.roi_align (aligned=True, sampling_ratio=2, 7x7) of a
random map for boxes inside it, the reference of our pool5/fc7 pooling (roi_grid).
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import write_fixture  # noqa: E402

if len(sys.argv) != 2:
    sys.exit('usage: make_mattnet_fixtures.py /path/to/MAttNet-checkout')
sys.path.insert(0, os.path.join(sys.argv[1], 'lib'))
from layers.joint_match import JointMatching  # noqa: E402
from crits.max_margin_crit import MaxMarginCriterion  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'mattnet')

OPT = dict(vocab_size=20, word_embedding_size=12, word_vec_size=10, rnn_hidden_size=8,
           bidirectional=1, word_drop_out=0.0, rnn_drop_out=0.0, rnn_num_layers=1,
           rnn_type='lstm', variable_lengths=1, jemb_dim=12, jemb_drop_out=0.0, pool5_dim=6,
           fc7_dim=9, visual_init_norm=20, visual_drop_out=0.0, num_atts=5)
K = 4          # samples: rows [positives; visual negatives; language negatives] = 3 K
NUM_CXT = 5
L = 7
MARGIN, VIS_W, LANG_W, ATT_W = 0.1, 1.0, 1.0, 1.0


def attribute_weights(counts, scale=10):
    """GtMRCNLoader.get_attribute_weights."""
    weights = 1 / counts ** 0.5
    weights = (weights - np.min(weights)) / (np.max(weights) - np.min(weights))
    return torch.from_numpy(weights * (scale - 1) + 1).float()


def main():
    torch.manual_seed(0)
    np.random.seed(0)
    model = JointMatching(OPT)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('normalizer.weight'):
                p.uniform_(5.0, 25.0)
            else:
                p.normal_(0.0, 0.4)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.normal_(0.0, 0.3)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 2.0)
    state = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    n = 3 * K
    pool5 = torch.randn(n, OPT['pool5_dim'], 7, 7)
    fc7 = torch.randn(n, OPT['fc7_dim'], 7, 7).relu()
    lfeats = torch.rand(n, 5)
    dif_lfeats = torch.randn(n, 25)
    cxt_fc7 = torch.randn(n, NUM_CXT, OPT['fc7_dim']).relu()
    cxt_lfeats = torch.randn(n, NUM_CXT, 5) + 0.1
    lengths = [7, 3, 5, 2, 6, 4, 7, 1, 3, 5, 2, 6]
    labels = torch.zeros(n, L, dtype=torch.long)
    for i, length in enumerate(lengths):
        labels[i, :length] = torch.randint(1, OPT['vocab_size'], (length,))
    counts = np.array([40.0, 12.0, 7.0, 3.0, 1.0])
    att_weights = attribute_weights(counts)
    att_labels = torch.zeros(K, OPT['num_atts'])
    att_labels[0, [0, 2]] = 1
    att_labels[2, 1] = 1
    att_labels[3, [3, 4]] = 1
    select_ixs = torch.tensor([0, 2, 3])  # sample 1 has no attribute words

    feats = (pool5, fc7, lfeats, dif_lfeats, cxt_fc7, cxt_lfeats, labels)
    model.eval()
    with torch.no_grad():
        scores, sub_grid_attn, sub_attn, loc_attn, rel_attn, rel_ixs, weights, att_scores = \
            model(*feats)

    model.train()
    mm_crit = MaxMarginCriterion(VIS_W, LANG_W, MARGIN)
    att_crit = nn.BCEWithLogitsLoss(att_weights)
    t_scores, t_grid, _, _, _, _, _, t_att = model(*feats)
    rank = mm_crit(t_scores)
    att = ATT_W * att_crit(t_att.index_select(0, select_ixs), att_labels.index_select(0, select_ixs))
    loss = rank + att
    loss.backward()

    tensors = {'state.' + k: v for k, v in state.items()}
    tensors.update({
        'in.pool5': pool5, 'in.fc7': fc7, 'in.lfeats': lfeats, 'in.dif_lfeats': dif_lfeats,
        'in.cxt_fc7': cxt_fc7, 'in.cxt_lfeats': cxt_lfeats, 'in.labels': labels.float(),
        'in.att_counts': torch.from_numpy(counts).float(), 'in.att_labels': att_labels,
        'in.select_ixs': select_ixs.float(),
        'eval.scores': scores, 'eval.sub_grid_attn': sub_grid_attn, 'eval.sub_attn': sub_attn,
        'eval.loc_attn': loc_attn, 'eval.rel_attn': rel_attn, 'eval.rel_ixs': rel_ixs.float(),
        'eval.weights': weights, 'eval.att_scores': att_scores,
        'train.scores': t_scores.detach(), 'train.att_scores': t_att.detach(),
        'train.att_weights': att_weights,
        'train.rank_loss': rank.detach().reshape(1), 'train.att_loss': att.detach().reshape(1),
        'train.loss': loss.detach().reshape(1),
    })
    for name, p in model.named_parameters():
        tensors['grad.' + name] = p.grad.detach().clone()
    for name, b in model.named_buffers():
        if 'running' in name:
            tensors['after.' + name] = b.detach().clone()
    # roi_grid's reference: ROI-align of C4/C5-like maps (boxes at least a pixel from the border,
    # where torchvision clamps and grid_sample pads with zeros).
    from torchvision.ops import roi_align
    features = torch.randn(2, 5, 12, 16)
    boxes = torch.tensor([[0, 1.5, 2.0, 9.0, 7.5], [0, 3.0, 1.25, 14.5, 10.0],
                          [1, 1.0, 1.0, 15.0, 11.0], [1, 6.2, 4.4, 8.1, 5.3]])
    tensors['roi.features'] = features
    tensors['roi.boxes'] = boxes
    tensors['roi.expected'] = roi_align(features, boxes, output_size=7, spatial_scale=1.0,
                                        sampling_ratio=2, aligned=True)
    tensors = {k: v.contiguous().float() for k, v in tensors.items()}
    meta = {'opt': OPT, 'samples': K, 'num_cxt': NUM_CXT, 'margin': MARGIN,
            'visual_rank_weight': VIS_W, 'lang_rank_weight': LANG_W, 'att_weight': ATT_W,
            'source': 'lichengunc/MAttNet lib/layers/joint_match.py, lib/crits/max_margin_crit.py'}
    write_fixture(OUT, 'mattnet', tensors, meta)


if __name__ == '__main__':
    main()
