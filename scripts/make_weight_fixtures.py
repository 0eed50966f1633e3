#!/usr/bin/python3
"""Writes the weight-file fixtures of tests/data/weights/ (docs: /work/shared/specs/weights.md,
sections 1-5 and 8), read by the C++ weight reader's tests.

Run with Debian's /usr/bin/python3 (torch 1.13, numpy 1.24) from anywhere:
    /usr/bin/python3 scripts/make_weight_fixtures.py
It rewrites every file, then loads each one back with torch.load / pickle.load / torch.jit.load /
the strict safetensors reader below and checks it against expected.json. Same bytes every run.

Files (format key of expected.json in brackets):
  state_dict.pth, state_dict_p4.pth (pickle protocol 4) [torch_zip], state_dict_legacy.pth
      [torch_legacy]: one OrderedDict state_dict with _metadata: every dtype, a Parameter, 0-dim
      and empty tensors, a slice, a transpose and an expand() sharing storages, tied weights,
      25 storages (so key order "0","1","10",... matters).
  my.model.v2.pth (root "my.model.v2"), buffer_saved.pth (saved to a buffer: root "archive").
  checkpoint.pth [torch_zip], checkpoint_legacy.pth [torch_legacy]: LAVT-style {'model',
      'optimizer' (AdamW after 2 steps, 2 groups), 'lr_scheduler' (LambdaLR), 'epoch', 'args'
      (argparse.Namespace), 'np_f64', 'np_i64' (numpy scalars)}.
  module_zip.pth, module_legacy.pth: {'model': a whole TinyMatcher module, 'opt': {'lr': 0.1}}
      (MAttNet-style; the legacy one names module classes by 'module' persistent ids).
  d2_p2.pkl, d2_p4.pkl, d2_p5.pkl [pickle]: detectron2 layout with numpy arrays (C and Fortran
      order, '>i4', f16, bool, 0-d, f64); d2_torch.pkl: the same with torch tensors pickled by
      plain pickle (torch.storage._load_from_bytes of a legacy stream).
  good.safetensors [safetensors] and one broken file per rule, bad_<rule>.safetensors.
  scripted_fp16.pt, traced_const.pt [torchscript]: a scripted module with an fp16 Linear, and
      a traced one whose plain tensor attribute became a constant (listed under "constants").

expected.json: {file: {"format", "root" (zip archives), "tensors": {flat name: {"shape",
"dtype", "values" (all values in C order; bool as 0/1)}}, "scalars": {flat name: value},
"shared": [[a, b], ...] (tensors sharing one storage in the file), "state_dict_metadata":
{flat name of an OrderedDict: its _metadata} (torch files), "metadata" (safetensors
__metadata__), "constants" (TorchScript constants.pkl tensors, in order)}, "broken": {file:
substring}}.
Flat names: dict keys joined with '.', int keys as decimals; list/tuple elements by index,
except that a list/tuple holding only int/float/bool/str (or nothing) is one scalar, a JSON list;
an argparse.Namespace by its attributes; numpy scalars are scalars; a whole nn.Module by its
state_dict() names under its own prefix (other module attributes are not listed); None is
skipped. TorchScript "tensors" = the module's state_dict() (named_parameters + named_buffers).

The C++ reader's error message for each broken safetensors file must contain (lowercase):
  bad_hole 'hole'                  gap between two tensors' byte ranges
  bad_overlap 'overlap'            two byte ranges overlap
  bad_out_of_range 'out of range'  a tensor ends past the end of the file
  bad_size_mismatch 'size'         end - begin != numel x element size
  bad_header_too_large 'header'    header length N > 100,000,000
  bad_no_brace '{'                 the header does not start with '{'
  bad_duplicate_name 'duplicate'   one tensor name twice in the JSON text
  bad_trailing_bytes 'trailing'    bytes after the last tensor
  bad_metadata_not_string 'metadata'  a __metadata__ value that is not a string
  bad_truncated_header 'truncated' N larger than the rest of the file
  bad_unknown_dtype 'dtype'        "F8_E4M3", which LibTorch 1.13 lacks
  bad_json 'json'                  the header is not valid JSON
Each file breaks one rule, given the order of checks of st_decode() below: header length limit,
truncation, '{', JSON and duplicates, metadata, then per tensor (by begin) dtype, hole, overlap,
range, size, and trailing bytes last (bad_header_too_large's N also exceeds its tiny file).

Determinism: the zip writer uses fixed timestamps. The legacy format names storages by memory
address (so key order, hence record order, changes between runs): those keys are renamed to
fixed fake addresses in a fixed shuffled order and the records reordered to match, in the legacy
files and in the streams embedded in d2_torch.pkl. Legacy module classes record their source
path: torch's are Debian paths, ours is made relative to the repository. torch.jit writes
__constants__ in set order, so the script re-runs itself with PYTHONHASHSEED=0.
"""
import argparse
import io
import json
import os
import pickle
import pickletools
import random
import struct
import sys
import zipfile

import numpy as np
import torch
from torch import nn

# torch.jit writes a module's __constants__ (a set) in iteration order: pin str hashing.
if os.environ.get('PYTHONHASHSEED') != '0':
    os.environ['PYTHONHASHSEED'] = '0'
    os.execv(sys.executable, [sys.executable] + sys.argv)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
OUT = os.path.join(REPO, 'tests', 'data', 'weights')


class TinyMatcher(nn.Module):
    """A MAttNet-like module pickled whole (so defined at module level)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.head = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 1))
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer('scale', torch.tensor([0.5, 2.0]))


class TinyScripted(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        self.register_buffer('offset', torch.tensor([0.25, -0.75]))

    def forward(self, x):
        return self.bn(self.lin(x.half()).float()) + self.offset


class TinyTraced(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.mask = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # neither param nor buffer

    def forward(self, x):
        return self.lin(x) * self.mask


# ---- torch.save, with reproducible legacy keys

class _StorageKeys(pickle.Unpickler):
    """Unpickles a legacy object pickle just to list its storage keys and element sizes."""

    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.elsize = {}  # key -> bytes per element, in order of first appearance

    def persistent_load(self, pid):
        if pid[0] == 'module':
            return pid[1]
        dtype = pid[1].dtype
        self.elsize.setdefault(pid[2], torch._utils._element_size(dtype))
        return torch.empty(pid[4], dtype=dtype).storage()  # content unused


def _pin_legacy_keys(data):
    """Renames the storage keys of a legacy stream (memory addresses, so their order changes
    from run to run) to fixed fake addresses and puts the raw records in the new key order."""
    f = io.BytesIO(data)
    starts = []
    for _ in range(5):  # magic, protocol, sys_info, object, key list; raw storages follow
        starts.append(f.tell())
        for _op in pickletools.genops(f):
            pass
    starts.append(f.tell())
    obj_pickle = data[starts[3]:starts[4]]
    reader = _StorageKeys(obj_pickle)
    reader.load()
    keys = list(reader.elsize)
    # Addresses in a fixed shuffled order, so string order differs from appearance order as in
    # real files (a reader must follow the key list).
    slots = random.Random(len(keys)).sample(range(len(keys)), len(keys))
    new_key = {k: str(94000000000000 + 4096 * slot) for k, slot in zip(keys, slots)}
    records, pos = {}, starts[5]
    for key in pickle.loads(data[starts[4]:starts[5]]):
        n, = struct.unpack('<q', data[pos:pos + 8])
        end = pos + 8 + n * reader.elsize[key]
        records[new_key[key]], pos = data[pos:end], end
    assert pos == len(data)

    out, ops = [], list(pickletools.genops(obj_pickle))
    for (op, arg, at), nxt in zip(ops, [p for _, _, p in ops[1:]] + [len(obj_pickle)]):
        assert op.name != 'FRAME'  # lengths change: protocol 2 only
        if op.name in ('BINUNICODE', 'SHORT_BINUNICODE') and arg in new_key:
            s = new_key[arg].encode()
            out.append(b'X' + struct.pack('<I', len(s)) + s)
        else:
            out.append(obj_pickle[at:nxt])
    order = sorted(records)
    return (data[:starts[3]] + b''.join(out) + pickle.dumps(order, protocol=2)
            + b''.join(records[k] for k in order))


_torch_source = torch.serialization.get_source_lines_and_file


def _repo_relative_source(obj, *args):
    lines, lineno, path = _torch_source(obj, *args)
    if os.path.abspath(path).startswith(os.path.abspath(REPO) + os.sep):
        path = os.path.relpath(path, REPO)  # independent of where the checkout lives
    return lines, lineno, path


torch.serialization.get_source_lines_and_file = _repo_relative_source


def save_torch(obj, name, legacy=False, **kw):
    path = os.path.join(OUT, name)
    if not legacy:
        torch.save(obj, path, **kw)
        return
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=False, **kw)
    with open(path, 'wb') as f:
        f.write(_pin_legacy_keys(b.getvalue()))


class _PinnedPickler(pickle.Pickler):
    """Plain pickle, except that each storage's embedded legacy stream gets pinned keys."""

    def reducer_override(self, obj):
        if isinstance(obj, torch.storage.TypedStorage):
            b = io.BytesIO()
            torch.save(obj, b, _use_new_zipfile_serialization=False)
            return torch.storage._load_from_bytes, (_pin_legacy_keys(b.getvalue()),)
        return NotImplemented


# ---- the objects

def make_state_dict():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.Linear(3, 2))
    with torch.no_grad():
        net[1](torch.randn(4, 2, 3, 3))  # moves running stats, num_batches_tracked = 1
    sd = net.state_dict()  # an OrderedDict with _metadata
    sd['extra.f64'] = torch.randn(2, 2, dtype=torch.float64)
    sd['extra.f16'] = torch.randn(3).half()
    sd['extra.bf16'] = torch.randn(3).bfloat16()
    sd['extra.i64'] = torch.tensor([-2**63, -1, 0, 2**40, 2**63 - 1])
    sd['extra.i32'] = torch.tensor([-2**31, -1, 2**31 - 1], dtype=torch.int32)
    sd['extra.i16'] = torch.tensor([-32768, 7, 32767], dtype=torch.int16)
    sd['extra.i8'] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd['extra.u8'] = torch.tensor([0, 1, 255], dtype=torch.uint8)
    sd['extra.bool'] = torch.tensor([True, False, True])
    sd['extra.param'] = nn.Parameter(torch.randn(2, 2))
    sd['extra.scalar'] = torch.tensor(3.25)
    sd['extra.empty'] = torch.zeros(0, 3)
    base = torch.arange(10, dtype=torch.float32)
    sd['view.base'], sd['view.slice'] = base, base[2:5]  # storage offset 2
    base2 = torch.randn(2, 3)
    sd['view.base2'], sd['view.t'] = base2, base2.t()  # strides (1, 3)
    small = torch.tensor([1.0, 2.0, 3.0])
    sd['view.small'], sd['view.expand'] = small, small.expand(2, 3)  # strides (0, 1)
    tied = torch.randn(2, 2)
    sd['tied.a'], sd['tied.b'] = tied, tied
    return sd


def make_checkpoint():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    decay = [model[0].weight, model[2].weight]
    no_decay = [model[0].bias, model[1].weight, model[1].bias, model[2].bias]
    opt = torch.optim.AdamW([{'params': decay}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=5e-05, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda x: (1 - x / 100) ** 0.9)  # LAVT's
    for _ in range(2):
        loss = model(torch.randn(5, 3)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    # state_dict() already replaces the lambda by None in 'lr_lambdas', so it pickles.
    return {'model': model.state_dict(), 'optimizer': opt.state_dict(),
            'lr_scheduler': sched.state_dict(), 'epoch': 3,
            'args': argparse.Namespace(lr=5e-05, model='lavt', swin_type='base', window12=True),
            'np_f64': np.float64(1.5), 'np_i64': np.int64(7)}


def make_module_dict():
    torch.manual_seed(2)
    m = TinyMatcher()
    with torch.no_grad():
        m.norm(torch.randn(4, 3))
    return {'model': m, 'opt': {'lr': 0.1}}


def make_d2_arrays():
    rng = np.random.RandomState(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    return {
        'backbone.res2.0.conv1.weight': f32(2, 2, 1, 1),
        'backbone.res2.0.conv1.norm.weight': f32(2),
        'backbone.fortran': np.asfortranarray(f32(2, 3)),
        'backbone.big_endian': np.array([-2**31, -1, 1, 2**31 - 1], dtype='>i4'),
        'backbone.f16': f32(3).astype(np.float16),
        'backbone.mask': np.array([True, False, False, True]),
        'backbone.scalar': np.array(2.5, dtype=np.float32),
        'backbone.f64': rng.standard_normal((2, 2)),
    }


def d2_layout(model):
    return {'model': model, '__author__': 'wico-fixtures', 'matching_heuristics': True}


# ---- safetensors

ST_DTYPES = {torch.float64: 'F64', torch.float32: 'F32', torch.float16: 'F16',
             torch.bfloat16: 'BF16', torch.int64: 'I64', torch.int32: 'I32', torch.int16: 'I16',
             torch.int8: 'I8', torch.uint8: 'U8', torch.bool: 'BOOL'}
ST_TORCH = {v: k for k, v in ST_DTYPES.items()}


def raw_bytes(t):
    t = t.contiguous()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def st_file(header, buffer, pad=True):
    """header: a dict (dumped compactly) or JSON text, padded with spaces to a multiple of 8."""
    text = (header if isinstance(header, str) else json.dumps(header, separators=(',', ':')))
    text = text.encode()
    if pad:
        text += b' ' * (-(8 + len(text)) % 8)
    return struct.pack('<Q', len(text)) + text + buffer


def st_encode(tensors, metadata=None):
    """The safetensors writer's layout: by descending element size, then name."""
    header = {'__metadata__': metadata} if metadata else {}
    buffer = b''
    for name, t in sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0])):
        data = raw_bytes(t)
        header[name] = {'dtype': ST_DTYPES[t.dtype], 'shape': list(t.shape),
                        'data_offsets': [len(buffer), len(buffer) + len(data)]}
        buffer += data
    return st_file(header, buffer)


def st_decode(data):
    """A strict reader (the reference reader's rules); errors name the rule as the C++ one must."""
    if len(data) < 8:
        raise ValueError('truncated header length')
    n, = struct.unpack('<Q', data[:8])
    if n > 100_000_000:
        raise ValueError('header too large')
    if 8 + n > len(data):
        raise ValueError('truncated header')
    text = data[8:8 + n].decode()
    if not text.startswith('{'):
        raise ValueError("header does not start with '{'")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError('duplicate name')
        return dict(pairs)

    try:
        header = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError('bad json: %s' % e)
    metadata = header.pop('__metadata__', {})
    if not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError('metadata values must be strings')
    buffer = data[8 + n:]
    end, out = 0, {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
        if info['dtype'] not in ST_TORCH:
            raise ValueError('unsupported dtype %s' % info['dtype'])
        begin, stop = info['data_offsets']
        if begin > end:
            raise ValueError('hole before %s' % name)
        if begin < end or stop < begin:
            raise ValueError('overlap at %s' % name)
        if stop > len(buffer):
            raise ValueError('%s out of range' % name)
        dtype = ST_TORCH[info['dtype']]
        numel = int(np.prod(info['shape']))
        if stop - begin != numel * torch.empty(0, dtype=dtype).element_size():
            raise ValueError('size mismatch for %s' % name)
        raw = torch.from_numpy(np.frombuffer(buffer[begin:stop], dtype=np.uint8).copy())
        out[name] = (raw.view(dtype).reshape(info['shape']) if numel  # view() rejects empty
                     else torch.empty(info['shape'], dtype=dtype))
        end = stop
    if end != len(buffer):
        raise ValueError('%d trailing bytes' % (len(buffer) - end))
    return out, metadata


def bad_safetensors():
    """One file per rule: {file: (bytes, substring of the error)}."""
    f32 = lambda b, e, shape=(2,): {'dtype': 'F32', 'shape': list(shape), 'data_offsets': [b, e]}
    buf = bytes(range(16))
    return {
        'hole': (st_file({'a': f32(0, 4, (1,)), 'b': f32(8, 16)}, buf), 'hole'),
        'overlap': (st_file({'a': f32(0, 8), 'b': f32(4, 12)}, buf[:12]), 'overlap'),
        'out_of_range': (st_file({'a': f32(0, 16, (4,))}, buf[:8]), 'out of range'),
        'size_mismatch': (st_file({'a': f32(0, 12)}, buf[:12]), 'size'),
        'header_too_large': (struct.pack('<Q', 200_000_000) + b'{}      ', 'header'),
        'no_brace': (st_file('[{"a":1}]', b''), '{'),
        'duplicate_name': (st_file('{"a":%s,"a":%s}' % (json.dumps(f32(0, 8)),
                                                      json.dumps(f32(8, 16))), buf), 'duplicate'),
        'trailing_bytes': (st_file({'a': f32(0, 8)}, buf), 'trailing'),
        'metadata_not_string': (st_file({'__metadata__': {'format': 1}, 'a': f32(0, 8)},
                                        buf[:8]), 'metadata'),
        'truncated_header': (struct.pack('<Q', 1000) + b'{"a":{"dtype":"F32",' + b' ' * 4,
                             'truncated'),
        'unknown_dtype': (st_file({'a': {'dtype': 'F8_E4M3', 'shape': [2],
                                         'data_offsets': [0, 2]}}, buf[:2]), 'dtype'),
        'json': (st_file('{"a":{"dtype":"F32","shape":[2],', buf[:8]), 'json'),
    }


# ---- expected.json

def flatten(value, prefix, tensors, scalars, metadata):
    join = lambda k: '%s.%s' % (prefix, k) if prefix else str(k)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        tensors[prefix] = value
    elif isinstance(value, nn.Module):
        for k, t in value.state_dict().items():
            tensors[join(k)] = t
    elif isinstance(value, np.generic):
        scalars[prefix] = value.item()
    elif isinstance(value, argparse.Namespace):
        flatten(vars(value), prefix, tensors, scalars, metadata)
    elif isinstance(value, dict):
        if hasattr(value, '_metadata'):
            metadata[prefix] = value._metadata
        for k, v in value.items():
            flatten(v, join(k), tensors, scalars, metadata)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, (bool, int, float, str)) for v in value):
            scalars[prefix] = list(value)
        else:
            for i, v in enumerate(value):
                flatten(v, join(i), tensors, scalars, metadata)
    elif isinstance(value, (bool, int, float, str)):
        scalars[prefix] = value
    elif value is not None:
        raise TypeError('%s: %r' % (prefix, type(value)))


def tensor_json(t):
    if isinstance(t, np.ndarray):
        dtype, values = t.dtype.name, t.ravel(order='C').tolist()
    else:
        t = t.detach()
        dtype, values = str(t.dtype).replace('torch.', ''), t.reshape(-1).tolist()
    if dtype == 'bool':
        values = [int(v) for v in values]
    return {'shape': list(t.shape), 'dtype': dtype, 'values': values}


def shared_pairs(tensors):
    first, pairs = {}, []
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.numel():
            ptr = t.storage().data_ptr()
            if ptr in first:
                pairs.append([first[ptr], name])
            else:
                first[ptr] = name
    return pairs


def entry(fmt, value, root=None):
    tensors, scalars, metadata = {}, {}, {}
    flatten(value, '', tensors, scalars, metadata)
    e = {'format': fmt}
    if root is not None:
        e['root'] = root
    e['tensors'] = {k: tensor_json(t) for k, t in tensors.items()}
    e['scalars'] = scalars
    e['shared'] = shared_pairs(tensors) if fmt in ('torch_zip', 'torch_legacy') else []
    if metadata and fmt != 'torchscript':  # a TorchScript archive keeps no _metadata
        e['state_dict_metadata'] = metadata
    return e


def pretty(v, depth=0):
    """Nested dicts one key a line down to the tensor entries, which stay on one line."""
    if not isinstance(v, dict) or not v or depth >= 3:
        return json.dumps(v)
    pad = ' ' * (depth + 1)
    items = ',\n'.join('%s%s: %s' % (pad, json.dumps(k), pretty(x, depth + 1))
                       for k, x in v.items())
    return '{\n%s\n%s}' % (items, ' ' * depth)


# ---- main

def write(name, data):
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)


def root_of(name):
    with zipfile.ZipFile(os.path.join(OUT, name)) as z:
        return z.namelist()[0].split('/')[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    expected = {}

    sd = make_state_dict()
    for name, kw in [('state_dict.pth', {}), ('state_dict_p4.pth', {'pickle_protocol': 4})]:
        save_torch(sd, name, **kw)
        expected[name] = entry('torch_zip', sd, name[:-4])
    save_torch(sd, 'state_dict_legacy.pth', legacy=True)
    expected['state_dict_legacy.pth'] = entry('torch_legacy', sd)

    torch.manual_seed(3)
    small = nn.Linear(2, 2).state_dict()
    save_torch(small, 'my.model.v2.pth')
    expected['my.model.v2.pth'] = entry('torch_zip', small, 'my.model.v2')
    b = io.BytesIO()
    torch.save(small, b)
    write('buffer_saved.pth', b.getvalue())
    expected['buffer_saved.pth'] = entry('torch_zip', small, 'archive')

    ckpt = make_checkpoint()
    save_torch(ckpt, 'checkpoint.pth')
    expected['checkpoint.pth'] = entry('torch_zip', ckpt, 'checkpoint')
    save_torch(ckpt, 'checkpoint_legacy.pth', legacy=True)
    expected['checkpoint_legacy.pth'] = entry('torch_legacy', ckpt)

    mod = make_module_dict()
    save_torch(mod, 'module_zip.pth')
    expected['module_zip.pth'] = entry('torch_zip', mod, 'module_zip')
    save_torch(mod, 'module_legacy.pth', legacy=True)
    expected['module_legacy.pth'] = entry('torch_legacy', mod)

    arrays = make_d2_arrays()
    for protocol in (2, 4, 5):
        name = 'd2_p%d.pkl' % protocol
        write(name, pickle.dumps(d2_layout(arrays), protocol=protocol))
        expected[name] = entry('pickle', d2_layout(arrays))
    # Tensors keep the arrays' strides (the Fortran one is a transposed view); no '>' in torch.
    tensors = {k: torch.from_numpy(a.astype(a.dtype.newbyteorder('='))) for k, a in arrays.items()}
    f = io.BytesIO()
    _PinnedPickler(f, protocol=4).dump(d2_layout(tensors))  # pickle.dump's default protocol
    write('d2_torch.pkl', f.getvalue())
    expected['d2_torch.pkl'] = entry('pickle', d2_layout(tensors))

    torch.manual_seed(4)
    st = {'f32': torch.randn(2, 3), 'f16': torch.randn(3).half(), 'bf16': torch.randn(3).bfloat16(),
          'i64': torch.tensor([-2**63, 5, 2**63 - 1]), 'i32': torch.tensor([-7, 2**31 - 1],
                                                                          dtype=torch.int32),
          'u8': torch.tensor([0, 128, 255], dtype=torch.uint8),
          'bool': torch.tensor([[True, False], [False, True]]),
          'f64': torch.randn(2, dtype=torch.float64), 'scalar': torch.tensor(-1.5),
          'empty': torch.zeros(0, 4)}
    st_meta = {'format': 'pt', 'config': '{"a": 1}'}
    write('good.safetensors', st_encode(st, st_meta))
    expected['good.safetensors'] = entry('safetensors', st)
    expected['good.safetensors']['metadata'] = st_meta
    broken = {}
    for rule, (data, word) in bad_safetensors().items():
        name = 'bad_%s.safetensors' % rule
        write(name, data)
        broken[name] = word

    torch.manual_seed(5)
    eager = TinyScripted()
    with torch.no_grad():
        eager.bn(torch.randn(4, 2))
    eager.lin.half()
    torch.jit.save(torch.jit.script(eager), os.path.join(OUT, 'scripted_fp16.pt'))
    expected['scripted_fp16.pt'] = entry('torchscript', eager.state_dict(), 'scripted_fp16')
    traced_eager = TinyTraced()
    traced = torch.jit.trace(traced_eager, torch.randn(3, 3))
    torch.jit.save(traced, os.path.join(OUT, 'traced_const.pt'))
    expected['traced_const.pt'] = entry('torchscript', traced_eager.state_dict(), 'traced_const')
    expected['traced_const.pt']['constants'] = [tensor_json(traced_eager.mask)]

    expected['broken'] = broken
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        f.write(pretty(expected) + '\n')
    check(json.loads(pretty(expected)))


# ---- reading everything back

def check(expected):
    def same(got, want, what):
        got_e, want_e = entry(want['format'], got, want.get('root')), want
        for key in ('tensors', 'scalars', 'shared'):
            assert json.loads(json.dumps(got_e[key])) == want_e[key], (what, key)

    for name, want in expected.items():
        if name == 'broken':
            continue
        path = os.path.join(OUT, name)
        fmt = want['format']
        if fmt in ('torch_zip', 'torchscript'):
            assert root_of(name) == want['root'], name
        if fmt in ('torch_zip', 'torch_legacy'):
            same(torch.load(path), want, name)
        elif fmt == 'pickle':
            with open(path, 'rb') as f:
                same(pickle.load(f, encoding='latin1'), want, name)
        elif fmt == 'safetensors':
            with open(path, 'rb') as f:
                tensors, metadata = st_decode(f.read())
            same(tensors, want, name)
            assert metadata == want['metadata']
        else:
            m = torch.jit.load(path)
            same(m.state_dict(), want, name)
            with zipfile.ZipFile(path) as z:
                assert '%s/constants.pkl' % want['root'] in z.namelist()
    for name, word in expected['broken'].items():
        with open(os.path.join(OUT, name), 'rb') as f:
            try:
                st_decode(f.read())
            except ValueError as e:
                assert word in str(e), (name, str(e))
            else:
                raise AssertionError(name + ' was accepted')
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print('%d files, %d bytes in %s' % (len(os.listdir(OUT)), total, os.path.relpath(OUT)))


if __name__ == '__main__':
    main()
