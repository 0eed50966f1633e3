#!/usr/bin/python3
"""Writes tests/data/mask2former_e2e/ (read by tests/topdown/mask2former_parity_test.cpp).

Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-torchvision 0.14) from the
repository root, given a checkout of facebookresearch/Mask2Former (not part of this project):
    /usr/bin/python3 scripts/make_mask2former_fixtures.py /path/to/Mask2Former
End to end with the original's own modules: a narrow torchvision ResNet trunk (Bottleneck, one
block a stage, width 4: torchvision's own classes, the network detectron2's torchvision-converted
R-50.pkl holds) -> Mask2Former's MSDeformAttnPixelDecoder (pixel_decoder/msdeformattn.py, its
MSDeformAttn running the original's CPU path, ms_deform_attn_core_pytorch) ->
MultiScaleMaskedTransformerDecoder (transformer_decoder/mask2former_transformer_decoder.py) ->
the logits upsampled to the input as MaskFormer.inference does -> MaskFormer.instance_inference
(maskformer_model.py), with random weights (every norm, bias and embedding perturbed).
The original's modules are imported from the checkout; what they import from detectron2 and
fvcore (configurable, Conv2d with norm/activation, get_norm, ShapeSpec, registries, the c2
initialisers, Instances/Boxes) is stubbed below with the same behaviour, and the CUDA extension
module with an empty one (the original then takes its CPU path).
The weights are written in the released checkpoint's layout (model_final_*.pkl: 'backbone.*' in
detectron2's names, 'sem_seg_head.pixel_decoder.*', 'sem_seg_head.predictor.*', numpy arrays under
'model'), so the C++ test loads them through the `mask2former` name map.
"""
import collections
import importlib
import os
import pickle
import sys
import types

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data',
                   'mask2former_e2e')
WIDTH = 4            # trunk stem channels (res2..res5: 16, 32, 64, 128)
CONV_DIM = 32        # pixel decoder and decoder width (GroupNorm(32, .) as detectron2's "GN")
QUERIES = 6
CLASSES = 5
TOP_K = 8            # test_topk_per_image
SIZE = 64            # input side


def install_stubs():
    """The detectron2 / fvcore names Mask2Former's modules import, with their behaviour."""
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    def c2_xavier_fill(m):
        nn.init.kaiming_uniform_(m.weight, a=1)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)

    def c2_msra_fill(m):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)

    module('fvcore')
    module('fvcore.nn')
    module('fvcore.nn.weight_init', c2_xavier_fill=c2_xavier_fill, c2_msra_fill=c2_msra_fill)

    def configurable(init_func=None, *, from_config=None):
        return init_func if init_func is not None else (lambda f: f)

    class Conv2d(nn.Conv2d):
        """detectron2.layers.Conv2d: a convolution, then `norm`, then `activation`."""

        def __init__(self, *args, **kwargs):
            norm = kwargs.pop('norm', None)
            activation = kwargs.pop('activation', None)
            super().__init__(*args, **kwargs)
            self.norm = norm
            self.activation = activation

        def forward(self, x):
            x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
            if self.norm is not None:
                x = self.norm(x)
            if self.activation is not None:
                x = self.activation(x)
            return x

    ShapeSpec = collections.namedtuple('ShapeSpec', ['channels', 'height', 'width', 'stride'],
                                       defaults=[None, None, None, None])

    def get_norm(norm, out_channels):
        if norm is None or norm == '':
            return None
        assert norm == 'GN', norm
        return nn.GroupNorm(32, out_channels)

    class Registry:
        def __init__(self, name):
            self.name = name

        def register(self, obj=None):
            return obj if obj is not None else (lambda o: o)

    class Instances:
        def __init__(self, image_size):
            self.image_size = image_size

    class Boxes:
        def __init__(self, tensor):
            self.tensor = tensor

    module('detectron2')
    module('detectron2.config', configurable=configurable)
    module('detectron2.layers', Conv2d=Conv2d, ShapeSpec=ShapeSpec, get_norm=get_norm)
    module('detectron2.utils')
    module('detectron2.utils.registry', Registry=Registry)
    module('detectron2.utils.memory', retry_if_cuda_oom=lambda f: f)
    module('detectron2.utils.comm', get_world_size=lambda: 1)
    module('detectron2.modeling', SEM_SEG_HEADS_REGISTRY=Registry('heads'),
           META_ARCH_REGISTRY=Registry('arch'), build_backbone=None, build_sem_seg_head=None)
    module('detectron2.modeling.backbone', Backbone=nn.Module)
    module('detectron2.modeling.postprocessing', sem_seg_postprocess=None)
    module('detectron2.data', MetadataCatalog=None)
    module('detectron2.structures', Boxes=Boxes, ImageList=None, Instances=Instances,
           BitMasks=None)
    module('detectron2.projects')
    module('detectron2.projects.point_rend')
    module('detectron2.projects.point_rend.point_features', point_sample=None,
           get_uncertain_point_coords_with_randomness=None)
    module('scipy')
    module('scipy.optimize', linear_sum_assignment=None)
    module('MultiScaleDeformableAttention')  # the CUDA op: absent, so the CPU path runs


def import_original(checkout):
    """Mask2Former's modules, without running its package __init__ files (they register
    datasets and import all of detectron2)."""
    root = os.path.join(checkout, 'mask2former')
    for name, sub in [('mask2former', ''), ('mask2former.modeling', 'modeling'),
                      ('mask2former.modeling.pixel_decoder', 'modeling/pixel_decoder'),
                      ('mask2former.modeling.transformer_decoder', 'modeling/transformer_decoder'),
                      ('mask2former.utils', 'utils')]:
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, sub)]
        sys.modules[name] = package
    pixel = importlib.import_module('mask2former.modeling.pixel_decoder.msdeformattn')
    decoder = importlib.import_module(
        'mask2former.modeling.transformer_decoder.mask2former_transformer_decoder')
    model = importlib.import_module('mask2former.maskformer_model')
    return pixel.MSDeformAttnPixelDecoder, decoder.MultiScaleMaskedTransformerDecoder, \
        model.MaskFormer


class NarrowResNet(ResNet):
    """torchvision's ResNet with `width` stem channels instead of 64, one block a stage."""

    def __init__(self, width):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(Bottleneck, width, 1)
        self.layer2 = self._make_layer(Bottleneck, width * 2, 1, stride=2)
        self.layer3 = self._make_layer(Bottleneck, width * 4, 1, stride=2)
        self.layer4 = self._make_layer(Bottleneck, width * 8, 1, stride=2)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            out['res%d' % (i + 2)] = x
        return out


def d2_name(k):
    """detectron2's tools/convert-torchvision-to-d2.py renames."""
    if not k.startswith('layer'):
        k = 'stem.' + k
    for t in [1, 2, 3, 4]:
        k = k.replace('layer%d' % t, 'res%d' % (t + 1))
    for t in [1, 2, 3]:
        k = k.replace('bn%d' % t, 'conv%d.norm' % t)
    k = k.replace('downsample.0', 'shortcut')
    k = k.replace('downsample.1', 'shortcut.norm')
    return k


def perturb(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
            if name.endswith('.weight') and p.dim() == 1:  # norms
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        for name, b in module.named_buffers():
            if name.endswith('running_mean'):
                b.normal_(0.0, 0.1)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 1.5)


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: make_mask2former_fixtures.py /path/to/Mask2Former-checkout')
    install_stubs()
    PixelDecoder, Decoder, MaskFormer = import_original(sys.argv[1])
    torch.manual_seed(0)
    trunk = NarrowResNet(WIDTH)
    channels = {'res%d' % (i + 2): WIDTH * 4 * 2 ** i for i in range(4)}
    strides = {'res2': 4, 'res3': 8, 'res4': 16, 'res5': 32}
    ShapeSpec = sys.modules['detectron2.layers'].ShapeSpec
    pixel_decoder = PixelDecoder(
        {k: ShapeSpec(channels=channels[k], stride=strides[k]) for k in channels},
        transformer_dropout=0.0, transformer_nheads=4, transformer_dim_feedforward=64,
        transformer_enc_layers=2, conv_dim=CONV_DIM, mask_dim=CONV_DIM, norm='GN',
        transformer_in_features=['res3', 'res4', 'res5'], common_stride=4)
    predictor = Decoder(CONV_DIM, True, num_classes=CLASSES, hidden_dim=CONV_DIM,
                        num_queries=QUERIES, nheads=4, dim_feedforward=64, dec_layers=3,
                        pre_norm=False, mask_dim=CONV_DIM, enforce_input_project=False)
    for m in (trunk, pixel_decoder, predictor):
        perturb(m)
        m.eval()

    image = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = trunk.features(image)
        mask_features, _, multi_scale = pixel_decoder.forward_features(feats)
        out = predictor(multi_scale, mask_features)
        # MaskFormer.inference: logits upsampled to the (here unpadded, square) input; the
        # postprocess crop and resize to the same size are the identity.
        mask_cls = out['pred_logits'][0]
        mask_pred = F.interpolate(out['pred_masks'], size=(SIZE, SIZE), mode='bilinear',
                                  align_corners=False)[0]
        fake = types.SimpleNamespace(
            sem_seg_head=types.SimpleNamespace(num_classes=CLASSES), num_queries=QUERIES,
            test_topk_per_image=TOP_K, panoptic_on=False, device=image.device)
        result = MaskFormer.instance_inference(fake, mask_cls, mask_pred)
        # Which (query, class) each instance is (the original keeps them only implicitly).
        probs = F.softmax(mask_cls, dim=-1)[:, :-1]
        class_probs, order = probs.flatten().topk(TOP_K, sorted=True)

    state = collections.OrderedDict()
    for k, v in trunk.state_dict().items():
        if 'num_batches_tracked' not in k:
            state['backbone.' + d2_name(k)] = v.numpy()
    for k, v in pixel_decoder.state_dict().items():
        state['sem_seg_head.pixel_decoder.' + k] = v.numpy()
    for k, v in predictor.state_dict().items():
        state['sem_seg_head.predictor.' + k] = v.numpy()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'mask2former_e2e.pkl'), 'wb') as f:
        pickle.dump({'model': state, '__author__': 'make_mask2former_fixtures.py'}, f, protocol=2)

    tensors = {
        'image': image,
        'res4': feats['res4'], 'res5': feats['res5'],
        'mask_features': mask_features,
        'pred_logits': out['pred_logits'], 'pred_masks': out['pred_masks'],
        'aux_last_logits': out['aux_outputs'][-1]['pred_logits'],
        'aux_first_masks': out['aux_outputs'][0]['pred_masks'],
        'instances.scores': result.scores,
        'instances.classes': result.pred_classes.float(),
        'instances.masks': result.pred_masks,
        'instances.class_probs_sorted': class_probs,
        'instances.query_sorted': (order // CLASSES).float(),
        'instances.class_sorted': (order % CLASSES).float(),
    }
    meta = {'width': WIDTH, 'conv_dim': CONV_DIM, 'queries': QUERIES, 'classes': CLASSES,
            'top_k': TOP_K, 'size': SIZE, 'heads': 4, 'ffn': 64, 'encoder_layers': 2,
            'decoder_layers': 3, 'aux_outputs': len(out['aux_outputs']),
            'source': 'facebookresearch/Mask2Former msdeformattn.py, '
                      'mask2former_transformer_decoder.py, maskformer_model.py'}
    write_fixture(OUT, 'mask2former_e2e', {k: v.contiguous().float() for k, v in tensors.items()},
                  meta)


if __name__ == '__main__':
    main()
