#!/usr/bin/python3
"""The original's side of `wico bench cris --against CHECKOUT`: CRIS's own model code
(DerrickWang005/CRIS.pytorch model/clip.py and model/layers.py, run by model/segmenter.py's
CRIS.forward itself) at paper size for R50 (CLIP RN50 + FPN + 3-layer decoder + Projector), the
CLIP built directly instead of from OpenAI's archive, random weights with a fixed seed (every
batch norm's affine and statistics random too, as scripts/make_cris_fixtures.py), timed in this
interpreter with the given thread count: the forward as test.py calls it (eval mode, no
gradients, batch 1), and one training step as train.py takes it (model.train(), CRIS.forward's
own BCE with logits against the target resized nearest to the logits' size, backward; the
optimiser step left out on both sides) on a batch of 2: batch 1 cannot train, txt_proj's
BatchNorm1d needs more than one value per channel. Writes the weights as train.py saves them
({'state_dict': {'module.' + name: tensor}}, torch.save zip) and the inputs, target and eval
logits beside them, for the C++ side to load by name and compare.

    /usr/bin/python3 bench/cris_against.py CHECKOUT OUT_DIR THREADS REPEATS WARMUP SIZE
Prints one JSON line: {"forward_s", "train_step_s", "threads", "torch", "flops"}; flops: the
eval forward's matrix products and convolutions as torch.profiler(with_flops=True) counts them,
summed over its events (elementwise ops left out, as in the C++ side's analytic count).
"""
import importlib.util
import json
import os
import sys
import types

import torch

WORDS = 17  # word_len of the RefCOCO configs
SOT, EOT = 49406, 49407
# The profiler's events that carry the FLOP of matrix products and convolutions.
MATRIX_OPS = {'aten::conv2d', 'aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm'}

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'scripts'))
sys.path.insert(0, HERE)
from tensor_fixture import randomise_weights  # noqa: E402
from against_common import against_arguments, median_time  # noqa: E402


def install_stubs():
    """model/__init__.py imports loguru (for build_segmenter's log line only)."""
    if importlib.util.find_spec('loguru') is None:
        loguru = types.ModuleType('loguru')
        loguru.logger = types.SimpleNamespace(info=print, warning=print)
        sys.modules['loguru'] = loguru



def token_ids(lengths):
    """SOT, random BPE ids, EOT, then 0 padding to WORDS (CRIS's tokenize with truncate)."""
    ids = torch.zeros(len(lengths), WORDS, dtype=torch.int64)
    for row, n in enumerate(lengths):
        ids[row, 0] = SOT
        ids[row, 1:n + 1] = torch.randint(1000, 40000, (n,))
        ids[row, n + 1] = EOT
    return ids


def main():
    root, out_dir, threads, repeats, warmup, size = against_arguments()
    install_stubs()
    sys.path.insert(0, root)
    from model import clip
    from model.layers import FPN, Projector, TransformerDecoder
    from model.segmenter import CRIS

    torch.manual_seed(0)
    # CRIS.__init__ for config/refcoco/cris_r50.yaml, with build_model's CLIP (RN50's sizes read
    # from its archive) constructed directly instead of from clip_pretrain.
    model = CRIS.__new__(CRIS)
    torch.nn.Module.__init__(model)
    model.backbone = clip.CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, WORDS, 49408, 512, 8, 12)
    model.neck = FPN(in_channels=[512, 1024, 1024], out_channels=[256, 512, 1024])
    model.decoder = TransformerDecoder(num_layers=3, d_model=512, nhead=8, dim_ffn=2048,
                                       dropout=0.1, return_intermediate=False)
    model.proj = Projector(1024, 512 // 2, 3)
    randomise_weights(model)
    image = torch.randn(2, 3, size, size)
    ids = token_ids([8, 12])
    target = (torch.rand(2, 1, size, size) > 0.7).float()

    def forward():
        return model(image[:1], ids[:1])

    model.eval()
    with torch.no_grad():
        logits = forward()
        forward_s = median_time(forward, repeats, warmup)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    with_flops=True) as profile:
            forward()
    flops = sum(e.flops for e in profile.events() if e.name in MATRIX_OPS and e.flops)
    # Saved before the training steps, whose forwards update the batch-norm statistics.
    torch.save({'state_dict': {'module.' + k: v for k, v in model.state_dict().items()}},
               os.path.join(out_dir, 'weights.pth'))
    torch.save({'image': image, 'ids': ids, 'target': target, 'logits': logits},
               os.path.join(out_dir, 'io.pth'))

    def train_step():
        model.zero_grad(set_to_none=True)
        _, _, loss = model(image, ids, target)
        loss.backward()

    model.train()
    train_s = median_time(train_step, max(1, repeats // 2), 1)
    print(json.dumps({'forward_s': forward_s, 'train_step_s': train_s, 'threads': threads,
                      'torch': torch.__version__, 'flops': flops}))


if __name__ == '__main__':
    main()
