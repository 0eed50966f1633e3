"""The fixture format the C++ tests read (tests/backbones/tensor_fixture.h): one raw little-endian
float32 file <stem>.bin and a JSON index <stem>.json,
{"meta": {...}, "tensors": {name: {"shape": [...], "offset": <in floats>}}}, one line a tensor."""
import json
import os

import torch


def write_fixture(out_dir, stem, tensors, meta):
    """Writes `tensors` (name -> float32 contiguous torch tensor, in order) and `meta`."""
    os.makedirs(out_dir, exist_ok=True)
    index, offset = {}, 0
    with open(os.path.join(out_dir, stem + '.bin'), 'wb') as f:
        for name, t in tensors.items():
            f.write(t.numpy().astype('<f4').tobytes())
            index[name] = {'shape': list(t.shape), 'offset': offset}
            offset += t.numel()
    with open(os.path.join(out_dir, stem + '.json'), 'w') as f:
        f.write('{"meta": ' + json.dumps(meta) + ',\n "tensors": {\n')
        f.write(',\n'.join(f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in index.items()))
        f.write('\n}}\n')
    print(f'{len(tensors)} tensors, {offset * 4} bytes')


def randomise_weights(model):
    """Every weight of `model` random, batch and layer norms' affine and statistics included
    (an original's own init, e.g. CLIP's zeroed bn3 and identity statistics, would hide most of
    the network from a comparison): norm weights U(0.5, 1.5), matrices and kernels N(0, 1/fan_in),
    other vectors and scalars N(0, 0.2), running means N(0, 0.2), running variances U(0.5, 1.5)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('.weight') and p.dim() == 1:
                p.uniform_(0.5, 1.5)
            elif p.dim() > 1:
                p.normal_(0, (p.numel() // p.shape[0]) ** -0.5)
            else:
                p.normal_(0, 0.2)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.normal_(0, 0.2)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 1.5)
