#!/usr/bin/env python3
"""Darknet-53 + the six YOLOv3 head CBLs as VLT/MCN's Keras code computes them, written from
Keras 2.3.1's documented layer formulas in numpy (channels last, HWIO kernels: no torch, so
nothing of our NCHW path is reused), at a narrow width with the original's depths (58 CBLs):

  Conv2D        'same' (stride 1: (k-1)/2 zeros all round) or, after ZeroPadding2D(((1,0),(1,0))),
                'valid' stride 2; no bias
  BatchNorm     inference: (x - moving_mean) / sqrt(moving_variance + 1e-3) * gamma + beta;
                training phase (what frozen layers still do in the original): the batch's mean
                and biased variance over N, H, W instead of the moving ones
  LeakyReLU     alpha 0.1

Writes tests/data/darknet/darknet_keras.h5 in Keras's save_weights layout (the layers the
original creates, weightless ones included, plus YOLOv3's conv2d_59 detection conv, which a
Darknet import ignores), the same weights as Darknet's own darknet.weights (header 0.2.0 with an
8-byte seen count; per convolution beta, gamma, mean, variance, then the OIHW kernel; 21 floats of
a detection layer after the 58 sections) and darknet.{json,bin}: the NCHW input and, for both phases, the three
taps (stage 3, stage 4, after the head) transposed to NCHW.

  /usr/bin/python3 scripts/make_darknet_fixtures.py tests/data/darknet
"""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import write_fixture  # noqa: E402

WIDTH, BLOCKS, HEAD, SIZE, BATCH = 2, (1, 2, 8, 8, 4), 6, 64, 2
rng = np.random.default_rng(17)


def conv(x, kernel, stride):
    kh = kernel.shape[0]
    if stride == 2:
        x = np.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    else:
        p = (kh - 1) // 2
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kh), axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nhwcij,ijco->nhwo", win, kernel)


def batch_norm(x, w, training):
    if training:
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    else:
        mean, var = w["moving_mean"], w["moving_variance"]
    return (x - mean) / np.sqrt(var + 1e-3) * w["gamma"] + w["beta"]


def leaky(x):
    return np.where(x > 0, x, 0.1 * x)


def make_layers():
    """The CBLs in creation order: (in, out, kernel, stride) and random weights."""
    specs = [(3, WIDTH, 3, 1)]
    c_in = WIDTH
    for s, n in enumerate(BLOCKS):
        c = WIDTH << (s + 1)
        specs.append((c_in, c, 3, 2))
        for _ in range(n):
            specs += [(c, c // 2, 1, 1), (c // 2, c, 3, 1)]
        c_in = c
    for i in range(HEAD):
        specs.append((c_in, c_in // 2, 1, 1) if i % 2 == 0 else (c_in // 2, c_in, 3, 1))
    layers = []
    for c_in, c_out, k, stride in specs:
        layers.append({
            "spec": (c_in, c_out, k, stride),
            "kernel": rng.normal(0, (k * k * c_in) ** -0.5, (k, k, c_in, c_out)),
            "gamma": rng.uniform(0.5, 1.5, c_out), "beta": rng.normal(0, 0.2, c_out),
            "moving_mean": rng.normal(0, 0.2, c_out),
            "moving_variance": rng.uniform(0.5, 1.5, c_out),
        })
    return layers


def forward(x, layers, training):
    it = iter(layers)

    def cbl(x):
        w = next(it)
        return leaky(batch_norm(conv(x, w["kernel"], w["spec"][3]), w, training))

    taps = {}
    x = cbl(x)
    for s, n in enumerate(BLOCKS):
        x = cbl(x)
        for _ in range(n):
            x = x + cbl(cbl(x))
        if s == 2:
            taps["stride8"] = x
        if s == 3:
            taps["stride16"] = x
    for _ in range(HEAD):
        x = cbl(x)
    taps["stride32"] = x
    return taps


def write_keras_h5(path, layers):
    """Keras 2.3.1's save_weights layout (keras/engine/saving.py), layer names as the original's
    model gets them after K.clear_session(): input_1, conv2d_k, batch_normalization_k,
    leaky_re_lu_k, zero_padding2d_s, add_k."""
    order, weights = ["input_1"], {}
    k, pad, add = 0, 0, 0

    def cbl_names(w):
        nonlocal k
        k += 1
        names = [f"conv2d_{k}", f"batch_normalization_{k}", f"leaky_re_lu_{k}"]
        weights[names[0]] = [(f"conv2d_{k}/kernel:0", w["kernel"])]
        weights[names[1]] = [(f"batch_normalization_{k}/{n}:0", w[n])
                             for n in ("gamma", "beta", "moving_mean", "moving_variance")]
        return names

    it = iter(layers)
    order += cbl_names(next(it))
    for n in BLOCKS:
        pad += 1
        order.append(f"zero_padding2d_{pad}")
        order += cbl_names(next(it))
        for _ in range(n):
            order += cbl_names(next(it)) + cbl_names(next(it))
            add += 1
            order.append(f"add_{add}")
    for _ in range(HEAD):
        order += cbl_names(next(it))
    # YOLOv3's 13x13 detection conv (with bias, no BN), which Darknet's import ignores.
    order.append("conv2d_59")
    weights["conv2d_59"] = [("conv2d_59/kernel:0", rng.normal(0, 0.1, (1, 1, 8 * WIDTH * 4, 21))),
                            ("conv2d_59/bias:0", rng.normal(0, 0.1, 21))]
    with h5py.File(path, "w") as f:
        write_keras_layers(f, order, weights)


def write_keras_layers(group, order, weights):
    """keras/engine/saving.py save_weights_to_hdf5_group into `group` (the file's root for
    save_weights, model_weights for model.save): layer_names, then a group per layer with its
    weight_names and one float32 dataset per weight ('/' in a name makes subgroups)."""
    group.attrs["layer_names"] = np.array([n.encode() for n in order])
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.3.1"
    for name in order:
        g = group.create_group(name)
        ws = weights.get(name, [])
        g.attrs["weight_names"] = np.array([w.encode() for w, _ in ws])
        for w, value in ws:
            g.create_dataset(w, value.shape, dtype="float32")[...] = value.astype(np.float32)


def write_darknet_weights(path, layers):
    """pjreddie/darknet src/parser.c save_convolutional_weights, in cfg order."""
    with open(path, "wb") as f:
        np.array([0, 2, 0], dtype="<i4").tofile(f)
        np.array([123456], dtype="<u8").tofile(f)
        for w in layers:
            for values in (w["beta"], w["gamma"], w["moving_mean"], w["moving_variance"],
                           w["kernel"].transpose(3, 2, 0, 1)):
                np.ascontiguousarray(values, dtype="<f4").tofile(f)
        np.arange(21, dtype="<f4").tofile(f)  # a later layer's floats, not read


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    layers = make_layers()
    # The weights as stored (float32), so the reference sees what the C++ side loads.
    for w in layers:
        for key in ("kernel", "gamma", "beta", "moving_mean", "moving_variance"):
            w[key] = w[key].astype(np.float32).astype(np.float64)
    write_keras_h5(os.path.join(out_dir, "darknet_keras.h5"), layers)
    write_darknet_weights(os.path.join(out_dir, "darknet.weights"), layers)
    x = rng.normal(0, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32).astype(np.float64)
    tensors = {"input": torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32).copy())}
    for phase, training in (("eval", False), ("train", True)):
        for name, t in forward(x, layers, training).items():
            tensors[f"{phase}.{name}"] = torch.from_numpy(
                t.transpose(0, 3, 1, 2).astype(np.float32).copy())
    write_fixture(out_dir, "darknet", tensors,
                  {"width": WIDTH, "blocks": list(BLOCKS), "head_convs": HEAD, "size": SIZE,
                   "cbls": len(layers)})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/darknet")
