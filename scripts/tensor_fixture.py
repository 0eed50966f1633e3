"""The fixture format the C++ tests read (tests/backbones/tensor_fixture.h): one raw little-endian
float32 file <stem>.bin and a JSON index <stem>.json,
{"meta": {...}, "tensors": {name: {"shape": [...], "offset": <in floats>}}}, one line a tensor."""
import json
import os


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
