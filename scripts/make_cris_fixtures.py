#!/usr/bin/python3
"""Writes the CRIS fixtures of tests/data/cris/ (read by tests/bottomup/cris_test.cpp) from CRIS's
own code (model/clip.py, model/layers.py of DerrickWang005/CRIS.pytorch), which the project does
not contain:
    /usr/bin/python3 scripts/make_cris_fixtures.py /path/to/CRIS.pytorch
A narrow CRIS of the same modules, composed as model/segmenter.py's CRIS.forward does (the CLIP
built directly instead of from an OpenAI archive): CLIP ResNet width 8 (C3 64, C4 128, C5 32
channels), text width 32 with 4 heads and 2 layers, word_dim 32, FPN in [64, 128, 32] out
[16, 32, 64], a decoder of 2 layers (d_model 32 = the text width, 4 heads, FFN 64), a projector
of in_dim 16. Random weights with a fixed seed (every batch norm's affine and statistics random),
eval mode, a 96x96 batch of 2 whose token sequences end in id-0 padding (the decoder's key padding
mask). Written: cris_checkpoint.pth, the weights as CRIS's train.py saves them (module.backbone.*,
module.neck.*, ... under 'state_dict', with its training state beside), and cris.bin/.json with
the inputs and the neck, decoder, projector-feature and logit outputs; meta: the configuration.
"""
import importlib.util
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import randomise_weights, write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'cris')


def load(checkout, name):
    spec = importlib.util.spec_from_file_location(
        'cris_' + name, os.path.join(checkout, 'model', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    clip, layers = load(sys.argv[1], 'clip'), load(sys.argv[1], 'layers')
    torch.manual_seed(0)
    meta = dict(embed_dim=32, image_resolution=64, vision_layers=[2, 1, 2, 1], vision_width=8,
                context_length=12, word_len=9, vocab_size=100, transformer_width=32,
                transformer_heads=4, transformer_layers=2, fpn_in=[64, 128, 32],
                fpn_out=[16, 32, 64], num_layers=2, num_head=4, dim_ffn=64, image_size=96,
                batch=2)
    model = torch.nn.Module()
    model.backbone = clip.CLIP(meta['embed_dim'], meta['image_resolution'],
                               tuple(meta['vision_layers']), meta['vision_width'], None,
                               meta['context_length'], meta['word_len'], meta['vocab_size'],
                               meta['transformer_width'], meta['transformer_heads'],
                               meta['transformer_layers'])
    model.neck = layers.FPN(in_channels=meta['fpn_in'], out_channels=meta['fpn_out'])
    model.decoder = layers.TransformerDecoder(num_layers=meta['num_layers'],
                                              d_model=meta['fpn_out'][1],
                                              nhead=meta['num_head'], dim_ffn=meta['dim_ffn'],
                                              dropout=0.1, return_intermediate=False)
    model.proj = layers.Projector(meta['embed_dim'], meta['fpn_out'][1] // 2, 3)
    randomise_weights(model)
    tensors = {}

    def put(name, t):
        tensors[name] = t.detach().to(torch.float32).contiguous().clone()

    # The weights as CRIS's train.py saves them (a DDP model's state dict under 'state_dict',
    # with the epoch, IoUs, precisions, optimiser and scheduler states beside it).
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[35], gamma=0.1)
    torch.save({'epoch': 3, 'cur_iou': 0.25, 'best_iou': 0.25,
                'prec': {'Pr@50': 0.1, 'Pr@60': 0.05},
                'state_dict': {'module.' + k: v for k, v in model.state_dict().items()},
                'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict()},
               os.path.join(OUT, 'cris_checkpoint.pth'))
    images = torch.randn(meta['batch'], 3, meta['image_size'], meta['image_size'])
    tokens = torch.tensor([[98, 5, 17, 42, 99, 0, 0, 0, 0],
                           [98, 7, 7, 63, 81, 12, 30, 44, 99]])
    put('images', images)
    put('tokens', tokens.float())
    model.eval()
    with torch.no_grad():
        # CRIS.forward, step by step.
        pad_mask = torch.zeros_like(tokens).masked_fill_(tokens == 0, 1).bool()
        vis = model.backbone.encode_image(images)
        word, state = model.backbone.encode_text(tokens)
        fq = model.neck(vis, state)
        b, c, h, w = fq.size()
        put('neck', fq)
        fq = model.decoder(fq, word, pad_mask).reshape(b, c, h, w)
        put('decoder', fq)
        put('projector_features', model.proj.vis(fq))
        put('logits', model.proj(fq, state))
    meta['parameters'] = sum(p.numel() for p in model.parameters())
    write_fixture(OUT, 'cris', tensors, meta)


if __name__ == '__main__':
    main()
