#!/usr/bin/python3
"""The original's side of `wico bench lavt --against CHECKOUT`: LAVT-RIS's own model code at
paper size (Swin-B window 12 + PWAM + SimpleDecoding, a separate BERT-base from its vendored
bert/ package), random weights (its own initialisation), timed in this interpreter with the
given thread count: the forward as test.py calls it (eval mode, no gradients), and one training
step as train.py takes it (model.train(), BERT left in eval mode, the class-weighted
cross-entropy on the 2-class logits, backward; the optimiser step left out on both sides).
Writes the weights as train.py saves them ({'model', 'bert_model'}: torch.save zip) and the
inputs, target and eval output beside them, for the C++ side to load by name and compare.

    /usr/bin/python3 bench/lavt_against.py CHECKOUT OUT_DIR THREADS REPEATS WARMUP SIZE
Prints one JSON line: {"forward_s", "train_step_s", "threads", "torch"}.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'scripts'))
sys.path.insert(0, HERE)
from make_lavt_ris_fixtures import install_stubs  # noqa: E402  (timm, mmcv, ... when missing)
from against_common import against_arguments, median_time  # noqa: E402


def main():
    root, out_dir, threads, repeats, warmup, size = against_arguments()
    install_stubs()
    sys.path.insert(0, root)
    import lib.backbone as backbone_mod
    from lib._utils import LAVT
    from lib.mask_predictor import SimpleDecoding
    from bert.configuration_bert import BertConfig
    from bert.modeling_bert import BertModel

    torch.manual_seed(0)
    # lib/segmentation.py's _segm_lavt for swin_type base with --window12, without the
    # pretrained file (its init_weights() instead).
    backbone = backbone_mod.MultiModalSwinTransformer(
        embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
        mlp_ratio=4, ape=False, drop_path_rate=0.3, patch_norm=True, out_indices=(0, 1, 2, 3),
        use_checkpoint=False, num_heads_fusion=[1, 1, 1, 1], fusion_drop=0.0)
    backbone.init_weights()
    model = LAVT(backbone, SimpleDecoding(8 * 128))
    bert = BertModel(BertConfig())  # bert-base-uncased's sizes
    bert.pooler = None  # as train.py
    image = torch.randn(1, 3, size, size)
    ids = torch.randint(1000, 5000, (1, 20), dtype=torch.int64)
    mask = torch.ones(1, 20, dtype=torch.int64)
    mask[0, 12:] = 0
    ids[0, 12:] = 0
    target = (torch.rand(1, size, size) > 0.7).long()

    def forward():
        last = bert(ids, attention_mask=mask)[0]
        return model(image, last.permute(0, 2, 1), l_mask=mask.unsqueeze(-1))

    model.eval()
    bert.eval()
    with torch.no_grad():
        output = forward()
        forward_s = median_time(forward, repeats, warmup)
    # Saved before the training steps, whose forwards update the decoder's batch-norm statistics.
    torch.save({'model': model.state_dict(), 'bert_model': bert.state_dict()},
               os.path.join(out_dir, 'weights.pth'))
    torch.save({'image': image, 'ids': ids, 'mask': mask, 'target': target, 'output': output},
               os.path.join(out_dir, 'io.pth'))

    weight = torch.tensor([0.9, 1.1])

    def train_step():
        model.zero_grad(set_to_none=True)
        bert.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(), target, weight=weight)
        loss.backward()

    model.train()  # train.py: model.train() each epoch; bert_model is never put in train mode
    train_s = median_time(train_step, max(1, repeats // 2), 1)
    print(json.dumps({'forward_s': forward_s, 'train_step_s': train_s, 'threads': threads,
                      'torch': torch.__version__}))


if __name__ == '__main__':
    main()
