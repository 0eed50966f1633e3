#!/usr/bin/python3
"""Writes the CLIP backbone fixtures of tests/data/clip/ (read by tests/backbones/clip_test.cpp)
from CRIS's own CLIP code (model/clip.py of DerrickWang005/CRIS.pytorch: OpenAI's CLIP with CRIS's
dense attention pooling and `connect` residual), which the project does not contain:
    /usr/bin/python3 scripts/make_clip_fixtures.py /path/to/CRIS.pytorch
A narrow CLIP of the same code (ModifiedResNet width 8, blocks 2 1 2 1, embed_dim 32, a 2x2
position table bicubic-resized to the 3x3 grid of a 96x96 input; text width 32, 4 heads, 2
layers, vocabulary 100, context 12 with sequences of 9) with a fixed seed; every batch norm and
every weight random (CLIP's own init zeroes each bn3, which would hide the residual paths). Written:
the state dict in CLIP's names (num_batches_tracked left out), images and token ids, and in eval
mode C3, C4, C5, the word features and the sentence state; C5 once more in training mode (batch
statistics), with the batch norms' updated running statistics. The meta also lists the state-dict
names and shapes and the parameter counts of the RN50 and RN101 layouts at CRIS's sizes, and
openai_clip.pt is the same weights as OpenAI's released TorchScript archives lay them out.
"""
import importlib.util
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import randomise_weights, write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'clip')


def archive(clip, model, tokens):
    """openai_clip.pt: the model in OpenAI's released layout (RN50.pt is a TorchScript archive
    whose convolution, linear and attention weights are float16, batch norms float32, plus the
    input_resolution, context_length and vocab_size scalars; no `connect`, which CRIS adds), here
    traced from the fixture model with the eval-mode weights written above."""
    model.eval()
    del model.visual.attnpool.connect  # not in OpenAI's files
    for name, value in (('input_resolution', 64), ('context_length', 12), ('vocab_size', 100)):
        if hasattr(model, name):
            delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    traced = torch.jit.trace_module(model, {'encode_text': (tokens,)})
    with torch.no_grad():
        for name, p in traced.named_parameters():
            if not any(k in name for k in ('bn', 'ln_', 'downsample.1', 'connect')):
                p.data = p.data.half()  # clip.model.convert_weights' choice of tensors
    torch.jit.save(traced, os.path.join(OUT, 'openai_clip.pt'))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    spec = importlib.util.spec_from_file_location(
        'cris_clip', os.path.join(sys.argv[1], 'model', 'clip.py'))
    clip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clip)

    torch.manual_seed(0)
    meta = dict(embed_dim=32, image_resolution=64, vision_layers=[2, 1, 2, 1], vision_width=8,
                context_length=12, txt_length=9, vocab_size=100, transformer_width=32,
                transformer_heads=4, transformer_layers=2, image_size=96, batch=2)
    model = clip.CLIP(meta['embed_dim'], meta['image_resolution'], tuple(meta['vision_layers']),
                      meta['vision_width'], None, meta['context_length'], meta['txt_length'],
                      meta['vocab_size'], meta['transformer_width'], meta['transformer_heads'],
                      meta['transformer_layers'])
    randomise_weights(model)
    tensors = {}

    def put(name, t):
        tensors[name] = t.detach().to(torch.float32).contiguous().clone()

    for name, t in model.state_dict().items():
        if not name.endswith('num_batches_tracked'):
            put('weights.' + name, t)
    images = torch.randn(meta['batch'], 3, meta['image_size'], meta['image_size'])
    # SOT-like start, words, the end token (the highest id, which encode_text picks), id-0 pads.
    tokens = torch.tensor([[98, 5, 17, 42, 99, 0, 0, 0, 0],
                           [98, 7, 7, 63, 81, 12, 30, 44, 99]])
    put('images', images)
    put('tokens', tokens.float())
    model.eval()
    with torch.no_grad():
        c3, c4, c5 = model.encode_image(images)
        words, state = model.encode_text(tokens)
    put('eval.c3', c3)
    put('eval.c4', c4)
    put('eval.c5', c5)
    put('eval.words', words)
    put('eval.state', state)
    model.train()
    with torch.no_grad():
        _, _, c5_train = model.encode_image(images)
    put('train.c5', c5_train)
    for name, b in model.named_buffers():
        if name.endswith('running_mean') or name.endswith('running_var'):
            put('train_stats.' + name, b)
    meta['parameters'] = sum(p.numel() for p in model.parameters())
    archive(clip, model, tokens)
    # OpenAI's RN50 and RN101 layouts at CRIS's sizes (context 77, word_len 17): every state-dict
    # name with its shape, and the parameter count, for the naming and counting tests.
    for label, layers, embed in (('rn50', (3, 4, 6, 3), 1024), ('rn101', (3, 4, 23, 3), 512)):
        full = clip.CLIP(embed, 224, layers, 64, None, 77, 17, 49408, 512, 8, 12)
        meta[label] = {'parameters': sum(p.numel() for p in full.parameters()),
                       'state_dict': {k: list(v.shape) for k, v in full.state_dict().items()}}
    write_fixture(OUT, 'clip', tensors, meta)


if __name__ == '__main__':
    main()
