#!/usr/bin/python3
"""Writes the LAVT fixtures of tests/data/lavt_ris/ by running the ORIGINAL LAVT code.

The original (yz93/LAVT-RIS) is not part of this project: this script imports it from a checkout
given on the command line. Get one (the repository holds one large jar, which is not needed):
    git clone https://github.com/yz93/LAVT-RIS /tmp/lavt-ris
or, from a bare mirror,
    mkdir -p /tmp/lavt-ris && git --git-dir=<mirror> archive HEAD -- . \\
        ':!refer/evaluation/tokenizer/stanford-corenlp-3.4.1.jar' | tar -x -C /tmp/lavt-ris
and run, from the repository root, with Debian's python (python3-torch 1.13, torchvision 0.14):
    /usr/bin/python3 scripts/make_lavt_ris_fixtures.py /tmp/lavt-ris
(the commit is recorded when the checkout is a git work tree or LAVT_RIS_COMMIT is set).

The original's helper packages that may be missing here (timm.models.layers: DropPath, to_2tuple,
trunc_normal_; mmcv and mmseg, imported by lib/mmcv_custom and lib/backbone.py for loading
pretrained Swin weights, which is not done; filelock and tqdm, imported by bert/file_utils.py
for downloads, which are not done) are stubbed in a temporary folder put on sys.path. Only the
missing ones are stubbed; the stubs of what runs are exact (DropPath as timm 0.4: identity in
eval mode; to_2tuple as timm; trunc_normal_ is torch.nn.init.trunc_normal_, timm's signature).

What it builds: the `lavt` variant as lib/segmentation.py's _segm_lavt does it (a
MultiModalSwinTransformer with ape=False, drop_path_rate 0.3, patch_norm, out_indices 0-3,
num_heads_fusion from --mha, then init_weights(); SimpleDecoding(8 * embed_dim); LAVT(backbone,
classifier)) and the separate text encoder as train.py does it (bert/ BertModel, pooler set to
None), but small: Swin embed 8, depths 2 2 2 2, heads 1 2 4 8, window 4, mlp_ratio 2, PWAM heads
1 2 2 4 (--mha 1-2-2-4), and a tiny BERT (vocab 128, hidden 32, 2 layers, 4 heads, intermediate
64, 32 positions). The factory only knows tiny/small/base/large (and always mlp_ratio 4), so the
modules are constructed directly; mlp_ratio 2 keeps the checkpoint near 1 MB. MMBasicLayer
hard-codes the PWAMs' language width as 768 (BERT-base): after building, each stage's `fusion`
is rebuilt by the original's PWAM with the same arguments but the tiny BERT's hidden size (same
place, same parameter names), before init_weights(). Every weight is then randomised (BatchNorm
affine and running statistics, LayerNorm affines, relative position bias tables, res_gate,
embeddings: nothing is left an identity), one real AdamW step is taken on a dummy loss over a
few parameters (so the optimizer state stays small), and the model runs in eval mode without
gradients on two inputs exactly as test.py calls it:
    last_hidden_states = bert_model(sentences, attention_mask=attentions)[0]
    embedding = last_hidden_states.permute(0, 2, 1)
    output = model(image, embedding, l_mask=attentions.unsqueeze(-1))
(attentions int64, as the original's dataset makes them).

What it writes, into tests/data/lavt_ris/ (about 1.5 MB):
  lavt_ris_tiny.pth  torch.save of the dict train.py saves for --model lavt: {'model':
                     model.state_dict(), 'bert_model': bert_model.state_dict() (no pooler),
                     'optimizer': AdamW state_dict (train.py's four parameter groups; state for
                     the 5 parameters of the dummy loss), 'epoch': 0, 'args': the
                     argparse.Namespace of the original's args.py parser (swin_type 'fixture':
                     the real sizes are in the .json meta), 'lr_scheduler': its LambdaLR (poly
                     0.9) state_dict}. It is checked to load back strictly into fresh modules
                     the way test.py loads it (--ddp_trained_weights: the pooler deleted first)
                     and to give the same output.
  lavt_ris_tiny.bin/.json  the tensor fixture (scripts/tensor_fixture.py): inputs, BERT's last
                     hidden state, PWAM outputs, the four backbone outputs, the decoder's last
                     feature map, the logits before and after the final interpolation, for a
                     64 x 64 batch of 2 (main) and one 58 x 46 image with sample 0's sentence
                     (rect.*: padding of the image, of the windows and of odd PatchMerging
                     inputs); "meta" holds every size, the versions, the LAVT-RIS commit and the
                     state_dict keys with shapes and dtypes.
Deterministic: fixed seeds, one thread.
"""
import argparse
import copy
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import warnings

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'lavt_ris')
STEM = 'lavt_ris_tiny'
SEED = 20240611
THREADS = 1

SWIN = {'embed_dim': 8, 'depths': [2, 2, 2, 2], 'num_heads': [1, 2, 4, 8], 'window_size': 4,
        'mlp_ratio': 2.0, 'qkv_bias': True, 'drop_path_rate': 0.3, 'patch_norm': True,
        'patch_size': 4, 'ape': False, 'out_indices': [0, 1, 2, 3]}
MHA = '1-2-2-4'  # --mha: PWAM heads per stage
BERT = {'vocab_size': 128, 'hidden_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 4,
        'intermediate_size': 64, 'max_position_embeddings': 32, 'type_vocab_size': 2,
        'hidden_act': 'gelu', 'layer_norm_eps': 1e-12, 'pad_token_id': 0}
BATCH = 2
SENTENCE_LENGTH = 20  # the original's max_tokens
REAL_TOKENS = [7, 13]  # tokens before the padding, per sample
MAIN_SIZE = (64, 64)  # maps 16, 8, 4, 2: the last smaller than the window
RECT_SIZE = (58, 46)  # padded to 60 x 48: maps 15x12, 8x6, 4x3, 2x2
ITERS_PER_EPOCH = 100  # len(data_loader) in train.py's poly schedule

# ---- stubs for the original's missing helper packages ----------------------------------------

STUBS = {
    'timm': {
        'timm/__init__.py': '',
        'timm/models/__init__.py': '',
        'timm/models/layers.py': '''"""Stub of timm.models.layers: what LAVT's backbone uses."""
import collections.abc
from itertools import repeat

import torch
import torch.nn as nn


def to_2tuple(x):
    if isinstance(x, collections.abc.Iterable):
        return x
    return tuple(repeat(x, 2))


def drop_path(x, drop_prob=0., training=False):
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    random_tensor.floor_()
    return x.div(keep_prob) * random_tensor


class DropPath(nn.Module):
    def __init__(self, drop_prob=None):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training)


trunc_normal_ = torch.nn.init.trunc_normal_  # (tensor, mean=0., std=1., a=-2., b=2.) as timm
''',
    },
    'mmcv': {
        'mmcv/__init__.py': "__version__ = '0.0.0+stub'\n",
        'mmcv/fileio.py': '''"""Stub: for lib/mmcv_custom (pretrained loading, unused)."""


class FileClient:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('mmcv stub')


def load(*args, **kwargs):
    raise NotImplementedError('mmcv stub')
''',
        'mmcv/parallel.py': '''def is_module_wrapper(module):
    return False
''',
        'mmcv/utils.py': '''import os


def mkdir_or_exist(dir_name, mode=0o777):
    if dir_name:
        os.makedirs(dir_name, mode=mode, exist_ok=True)
''',
        'mmcv/runner.py': '''def get_dist_info():
    return 0, 1
''',
    },
    'mmseg': {
        'mmseg/__init__.py': '',
        'mmseg/utils.py': '''import logging


def get_root_logger(log_file=None, log_level=logging.INFO):
    logger = logging.getLogger('mmseg')
    logger.setLevel(log_level)
    return logger
''',
    },
    'filelock': {
        'filelock.py': '''"""Stub: bert/file_utils.py locks downloads (none are made)."""


class FileLock:
    def __init__(self, lock_file, timeout=-1):
        self.lock_file = lock_file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
''',
    },
    'tqdm': {
        'tqdm/__init__.py': 'from .auto import tqdm\n',
        'tqdm/auto.py': '''"""Stub: bert/file_utils.py shows download progress (none are made)."""


class tqdm:
    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n=1):
        pass

    def close(self):
        pass
''',
    },
}


def install_stubs():
    """Writes stubs for the missing packages into a temporary folder first on sys.path."""
    missing = [name for name in STUBS if importlib.util.find_spec(name) is None]
    if missing:
        folder = tempfile.mkdtemp(prefix='lavt_stubs_')
        for name in missing:
            for path, text in STUBS[name].items():
                full = os.path.join(folder, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, 'w') as f:
                    f.write(text)
        sys.path.insert(0, folder)
    return missing


def lavt_commit(root):
    if os.environ.get('LAVT_RIS_COMMIT'):
        return os.environ['LAVT_RIS_COMMIT']
    def git(*command):
        return subprocess.run(['git', '-C', root, *command], check=True, capture_output=True,
                              text=True).stdout.strip()
    try:  # only when the checkout itself is the work tree (not a folder inside another one)
        if os.path.realpath(git('rev-parse', '--show-toplevel')) == os.path.realpath(root):
            return git('rev-parse', 'HEAD')
    except (OSError, subprocess.CalledProcessError):
        pass
    return 'unknown'


# ---- randomisation ------------------------------------------------------------------------------

def randomise(module):
    """Every parameter and BatchNorm statistic random; asserts none is left out."""
    touched = set()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(1.0 + 0.3 * torch.randn_like(m.weight))
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1000)
                touched.update({id(m.weight), id(m.bias)})
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.3 * torch.randn_like(m.weight))
                m.bias.normal_(0.0, 0.2)
                touched.update({id(m.weight), id(m.bias)})
            elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, fan_in ** -0.5)
                touched.add(id(m.weight))
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.2)
                    touched.add(id(m.bias))
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, 0.5)  # the padding row too: it is an ordinary row forward
                touched.add(id(m.weight))
            elif isinstance(m, nn.InstanceNorm1d):
                assert not m.affine and not m.track_running_stats
        for name, p in module.named_parameters():
            if name.endswith('relative_position_bias_table'):
                p.normal_(0.0, 0.5)
                touched.add(id(p))
        left = [n for n, p in module.named_parameters() if id(p) not in touched]
        assert not left, left


# ---- the model ---------------------------------------------------------------------------------

def build(modules, args):
    """The original's _segm_lavt at the small size, and train.py's BERT (pooler None)."""
    backbone_mod, SimpleDecoding, LAVT, BertModel, BertConfig = modules
    mha = [int(a) for a in args.mha.split('-')] if args.mha else [1, 1, 1, 1]
    backbone = backbone_mod.MultiModalSwinTransformer(
        embed_dim=SWIN['embed_dim'], depths=SWIN['depths'], num_heads=SWIN['num_heads'],
        window_size=SWIN['window_size'], mlp_ratio=SWIN['mlp_ratio'], ape=False,
        drop_path_rate=0.3, patch_norm=True, out_indices=(0, 1, 2, 3), use_checkpoint=False,
        num_heads_fusion=mha, fusion_drop=args.fusion_drop)
    # MMBasicLayer builds its PWAM with l_in_channels 768 (BERT-base's width): rebuild each with
    # the same arguments but the tiny BERT's width (same module, same place, same names).
    for i, layer in enumerate(backbone.layers):
        assert layer.fusion.image_lang_att.l_in_channels == 768
        layer.fusion = backbone_mod.PWAM(layer.dim, layer.dim, BERT['hidden_size'], layer.dim,
                                         layer.dim, num_heads=mha[i], dropout=args.fusion_drop)
    backbone.init_weights()  # as _segm_lavt without pretrained weights
    classifier = SimpleDecoding(8 * SWIN['embed_dim'])
    model = LAVT(backbone, classifier)

    bert_model = BertModel(BertConfig(**BERT))
    bert_model.pooler = None  # train.py: "a work-around for a bug in Transformers = 3.0.2"
    return model, bert_model


def make_optimizer(model, bert_model, args):
    """train.py's parameter groups, AdamW and LambdaLR (BERT layers range(10) capped)."""
    backbone_no_decay, backbone_decay = [], []
    for name, m in model.backbone.named_parameters():
        if 'norm' in name or 'absolute_pos_embed' in name or 'relative_position_bias_table' in name:
            backbone_no_decay.append(m)
        else:
            backbone_decay.append(m)
    n_bert = min(10, len(bert_model.encoder.layer))
    params_to_optimize = [
        {'params': backbone_no_decay, 'weight_decay': 0.0},
        {'params': backbone_decay},
        {'params': [p for p in model.classifier.parameters() if p.requires_grad]},
        {'params': [p for i in range(n_bert) for p in bert_model.encoder.layer[i].parameters()
                    if p.requires_grad]},
    ]
    optimizer = torch.optim.AdamW(params_to_optimize, lr=args.lr,
                                  weight_decay=args.weight_decay, amsgrad=args.amsgrad)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda x: (1 - x / (ITERS_PER_EPOCH * args.epochs)) ** 0.9)
    return optimizer, lr_scheduler


def dummy_step(model, bert_model, optimizer, lr_scheduler):
    """One real optimizer step on a loss over one parameter of each group (small state)."""
    chosen = [model.backbone.norm0.weight, model.backbone.layers[0].res_gate[0].weight,
              model.classifier.conv1_1.weight, model.classifier.conv1_1.bias,
              bert_model.encoder.layer[0].attention.self.query.weight]
    loss = sum((p - 0.5).pow(2).sum() for p in chosen)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad()


def make_inputs(batch, height, width):
    image = torch.rand(batch, 3, height, width)  # as ToTensor gives, then T.Normalize
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (image - mean) / std


def make_sentences():
    # As the dataset: int64 ids padded with 0 and an int64 mask, [B, 20].
    sentences = torch.zeros(BATCH, SENTENCE_LENGTH, dtype=torch.int64)
    attentions = torch.zeros(BATCH, SENTENCE_LENGTH, dtype=torch.int64)
    for b, n in enumerate(REAL_TOKENS):
        sentences[b, :n] = torch.randint(1, BERT['vocab_size'], (n,))
        attentions[b, :n] = 1
    return sentences, attentions


def run(model, bert_model, image, sentences, attentions, record=None):
    """test.py's calls; `record` (a dict) receives the intermediates from hooks."""
    hooks = []
    if record is not None:
        def keep(name, value):  # returns None: the hooks leave the outputs alone
            record[name] = value.detach().clone()

        def keep_stages(module, inp, out):
            for i, o in enumerate(out):
                keep(f'backbone.stage{i}', o)

        for i, layer in enumerate(model.backbone.layers):
            hooks.append(layer.fusion.register_forward_hook(
                lambda m, inp, out, i=i: keep(f'backbone.pwam{i}', out)))
        hooks.append(model.backbone.register_forward_hook(keep_stages))
        hooks.append(model.classifier.conv1_1.register_forward_pre_hook(
            lambda m, inp: keep('classifier.hidden', inp[0])))
        hooks.append(model.classifier.register_forward_hook(
            lambda m, inp, out: keep('classifier.logits', out)))
    try:
        with torch.no_grad():
            last_hidden_states = bert_model(sentences, attention_mask=attentions)[0]
            embedding = last_hidden_states.permute(0, 2, 1)
            output = model(image, embedding, l_mask=attentions.unsqueeze(-1))
    finally:
        for h in hooks:
            h.remove()
    if record is not None:
        record['bert.last_hidden_state'] = last_hidden_states.clone()
        record['output'] = output.clone()
    return output


def keys_with_shapes(state_dict):
    return [[k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in state_dict.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('lavt_ris', help='path of a LAVT-RIS checkout (its code is imported)')
    root = os.path.abspath(parser.parse_args().lavt_ris)
    if not os.path.isfile(os.path.join(root, 'lib', 'backbone.py')):
        sys.exit(f'{root} is not a LAVT-RIS checkout (no lib/backbone.py)')

    torch.set_num_threads(THREADS)
    warnings.filterwarnings('ignore', message='torch.meshgrid')  # in the original's Swin
    stubbed = install_stubs()
    sys.path.insert(0, root)
    import lib.backbone as backbone_mod
    from lib import segmentation  # noqa: F401  (imports as train.py and test.py do)
    from lib._utils import LAVT
    from lib.mask_predictor import SimpleDecoding
    from bert.configuration_bert import BertConfig
    from bert.modeling_bert import BertModel
    from args import get_parser
    modules = (backbone_mod, SimpleDecoding, LAVT, BertModel, BertConfig)

    # The README's training command (4 processes, so local_rank is set), at this size.
    args = get_parser().parse_args([
        '--model', 'lavt', '--dataset', 'refcoco', '--model_id', STEM, '--batch-size', '8',
        '--lr', '0.00005', '--wd', '1e-2', '--swin_type', 'fixture', '--epochs', '40',
        '--img_size', str(MAIN_SIZE[0]), '--mha', MHA, '--local_rank', '0'])

    torch.manual_seed(SEED)
    model, bert_model = build(modules, args)
    randomise(model)
    randomise(bert_model)
    optimizer, lr_scheduler = make_optimizer(model, bert_model, args)
    dummy_step(model, bert_model, optimizer, lr_scheduler)
    model.eval()
    bert_model.eval()

    # SyncBatchNorm (train.py converts both modules) keeps the state_dict names.
    sync = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in sync.modules())
    assert list(sync.state_dict().keys()) == list(model.state_dict().keys())

    sentences, attentions = make_sentences()
    # main: the batch of 2; rect: one image of another size with sample 0's sentence.
    cases = {'': (make_inputs(BATCH, *MAIN_SIZE), sentences, attentions),
             'rect.': (make_inputs(1, *RECT_SIZE), sentences[:1], attentions[:1])}
    tensors = {}
    outputs = {}
    for prefix, (image, ids, mask) in cases.items():
        record = {}
        outputs[prefix] = run(model, bert_model, image, ids, mask, record)
        tensors[prefix + 'inputs.image'] = image
        if not prefix:
            tensors['inputs.token_ids'] = sentences.float()
            tensors['inputs.attention_mask'] = attentions.float()
            names = ['bert.last_hidden_state'] + [f'backbone.pwam{i}' for i in range(4)] + \
                    [f'backbone.stage{i}' for i in range(4)] + \
                    ['classifier.hidden', 'classifier.logits', 'output']
        else:
            names = [f'backbone.stage{i}' for i in range(4)] + ['classifier.logits', 'output']
        for name in names:
            tensors[prefix + name] = record[name].float().contiguous()

    checkpoint = {'model': model.state_dict(), 'bert_model': bert_model.state_dict(),
                  'optimizer': optimizer.state_dict(), 'epoch': 0, 'args': args,
                  'lr_scheduler': lr_scheduler.state_dict()}
    os.makedirs(OUT, exist_ok=True)
    pth = os.path.join(OUT, STEM + '.pth')
    torch.save(checkpoint, pth)  # to a path, as utils.save_on_master: records under lavt_ris_tiny/

    # Load it back as test.py does (fresh modules, the pooler deleted under
    # --ddp_trained_weights, strict load_state_dict) and compare.
    torch.manual_seed(SEED + 1)
    model2, bert2 = build(modules, args)
    loaded = torch.load(pth, map_location='cpu')
    model2.load_state_dict(loaded['model'])
    bert2.load_state_dict(loaded['bert_model'])
    model2.eval()
    bert2.eval()
    for prefix, (image, ids, mask) in cases.items():
        again = run(model2, bert2, image, ids, mask)
        assert torch.equal(again, outputs[prefix]), prefix

    opt = checkpoint['optimizer']
    meta = {
        'source': 'yz93/LAVT-RIS, lib/segmentation.py _segm_lavt (model=lavt) + bert/ BertModel',
        'lavt_ris_commit': lavt_commit(root),
        'torch': torch.__version__,
        'threads': THREADS,
        'seed': SEED,
        'stubbed_packages': stubbed,
        'swin': SWIN,
        'fusion_heads': [int(a) for a in MHA.split('-')],
        'fusion_drop': args.fusion_drop,
        'bert': BERT,
        'language_dim': BERT['hidden_size'],
        'classifier': {'c4_dims': 8 * SWIN['embed_dim'], 'hidden': 4 * SWIN['embed_dim']},
        'batch': BATCH,
        'sentence_length': SENTENCE_LENGTH,
        'real_tokens': REAL_TOKENS,
        'input_size': list(MAIN_SIZE),
        'rect_input_size': list(RECT_SIZE),
        'rect_batch': 1,
        'rect_sentence': 'sample 0 of inputs.token_ids / inputs.attention_mask',
        'normalize': {'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]},
        'forward': 'bert_model(ids, attention_mask=mask)[0].permute(0, 2, 1) -> '
                   'model(image, embedding, l_mask=mask.unsqueeze(-1)); mask int64; '
                   'output = bilinear(align_corners=True) of classifier.logits to the input size',
        'tensors_layout': {
            'backbone.pwamI': '[B, H_i*W_i, C_i]: PWAM output of stage i (before norm_i)',
            'backbone.stageI': '[B, C_i, H_i, W_i]: norm_i(pwam_i), the backbone outputs',
            'classifier.hidden': '[B, hidden, H/4, W/4]: input of classifier.conv1_1',
            'classifier.logits': '[B, 2, H/4, W/4]: SimpleDecoding output',
            'output': '[B, 2, H, W]: the model output',
            'inputs.token_ids / inputs.attention_mask': 'int64 in the original, stored as float'},
        'checkpoint': {
            'file': STEM + '.pth',
            'keys': list(checkpoint.keys()),
            'epoch': 0,
            'args': vars(args),
            'optimizer_groups': [len(g['params']) for g in opt['param_groups']],
            'optimizer_state_params': sorted(opt['state'].keys()),
            'optimizer_note': 'AdamW, one step on a dummy loss over backbone.norm0.weight, '
                              'backbone.layers.0.res_gate.0.weight, classifier.conv1_1.weight/bias'
                              ' and bert encoder.layer.0.attention.self.query.weight; BERT group '
                              'over layers range(min(10, layers))',
            'lr_scheduler': {k: v for k, v in checkpoint['lr_scheduler'].items()},
            'model': keys_with_shapes(checkpoint['model']),
            'bert_model': keys_with_shapes(checkpoint['bert_model']),
        },
    }
    if meta['lavt_ris_commit'] == 'unknown':
        print('note: the LAVT-RIS commit is unknown (not a git work tree; set LAVT_RIS_COMMIT)')
    write_fixture(OUT, STEM, tensors, meta)
    for prefix, out in outputs.items():
        print(f'{prefix or "main."}output {list(out.shape)} mean {out.mean():.4f} '
              f'std {out.std():.4f} max|.| {out.abs().max():.4f}')
    for name in sorted(os.listdir(OUT)):
        path = os.path.join(OUT, name)
        with open(path, 'rb') as f:
            digest = hashlib.md5(f.read()).hexdigest()
        print(f'{name}: {os.path.getsize(path)} bytes, md5 {digest}')


if __name__ == '__main__':
    main()
