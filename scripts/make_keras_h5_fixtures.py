#!/usr/bin/env python3
"""Writes the Keras HDF5 weight fixtures of tests/io/keras_h5_test.cpp with Debian's python3-h5py.

The layout is Keras 2.3.1's (keras/engine/saving.py, save_weights_to_hdf5_group and
_serialize_model), reproduced with h5py alone (no TensorFlow on Debian):

  model.save_weights(path)      root attrs layer_names, backend, keras_version; one group per
                                layer (weightless ones too) with attr weight_names; a weight's
                                dataset at <layer>/<weight name>, e.g. conv2d_1/conv2d_1/kernel:0
  model.save(path)              the same under /model_weights, beside model_config and an
                                optimizer_weights group

Attributes over 64,512 bytes are split by Keras into <name>0, <name>1, ...; the third file
writes layer_names that way (split by hand, the file is small).

Every weight's values are arange(numel) * 0.25 + offset, offset its position in the file's
weight order (the test recomputes them).

  /usr/bin/python3 scripts/make_keras_h5_fixtures.py tests/data/keras_h5
"""
import json
import os
import sys

import h5py
import numpy as np

# (layer, [(weight name, shape, dtype)]) in the model's layer order: a bias-free Darknet conv
# (HWIO kernel) and its batch norm (Keras's order), a weightless LeakyReLU, a conv with bias, a
# bidirectional GRU built under a TF variable scope (its names carry the scope), a float64 and a
# float16 weight.
LAYERS = [
    ("input_1", []),
    ("conv2d_1", [("conv2d_1/kernel:0", (3, 3, 2, 4), "float32")]),
    ("batch_normalization_1", [
        ("batch_normalization_1/gamma:0", (4,), "float32"),
        ("batch_normalization_1/beta:0", (4,), "float32"),
        ("batch_normalization_1/moving_mean:0", (4,), "float32"),
        ("batch_normalization_1/moving_variance:0", (4,), "float32"),
    ]),
    ("leaky_re_lu_1", []),
    ("conv2d_2", [("conv2d_2/kernel:0", (1, 1, 4, 3), "float32"),
                  ("conv2d_2/bias:0", (3,), "float32")]),
    ("bidirectional_1", [
        ("gru_module/bidirectional_1/forward_gru_1/kernel:0", (5, 9), "float32"),
        ("gru_module/bidirectional_1/forward_gru_1/recurrent_kernel:0", (3, 9), "float32"),
        ("gru_module/bidirectional_1/forward_gru_1/bias:0", (9,), "float32"),
        ("gru_module/bidirectional_1/backward_gru_1/kernel:0", (5, 9), "float32"),
        ("gru_module/bidirectional_1/backward_gru_1/recurrent_kernel:0", (3, 9), "float32"),
        ("gru_module/bidirectional_1/backward_gru_1/bias:0", (9,), "float32"),
    ]),
    ("dense_1", [("dense_1/kernel:0", (2, 3), "float64"), ("dense_1/bias:0", (3,), "float16")]),
]


def values(shape, dtype, offset):
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float64) * 0.25 + offset).reshape(shape).astype(dtype)


def write_layers(group, split_layer_names=False):
    names = [name.encode("utf8") for name, _ in LAYERS]
    if split_layer_names:  # Keras's chunked form: layer_names0, layer_names1
        group.attrs["layer_names0"] = np.array(names[:4])
        group.attrs["layer_names1"] = np.array(names[4:])
    else:
        group.attrs["layer_names"] = np.array(names)
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.3.1"
    offset = 0
    for layer, weights in LAYERS:
        g = group.create_group(layer)
        g.attrs["weight_names"] = np.array([w.encode("utf8") for w, _, _ in weights])
        for name, shape, dtype in weights:
            d = g.create_dataset(name, shape, dtype=dtype)
            d[...] = values(shape, dtype, offset)
            offset += 1


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with h5py.File(os.path.join(out_dir, "save_weights.h5"), "w") as f:
        write_layers(f)
    with h5py.File(os.path.join(out_dir, "model_save.h5"), "w") as f:
        f.attrs["keras_version"] = b"2.3.1"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {}}).encode()
        write_layers(f.create_group("model_weights"))
        opt = f.create_group("optimizer_weights")
        opt.attrs["weight_names"] = np.array([b"Adam/iterations:0"])
        opt.create_dataset("Adam/iterations:0", (), dtype="int64")[...] = 7
    with h5py.File(os.path.join(out_dir, "chunked_names.h5"), "w") as f:
        write_layers(f, split_layer_names=True)
    # An HDF5 file that is not a Keras weight file.
    with h5py.File(os.path.join(out_dir, "not_keras.h5"), "w") as f:
        f.create_dataset("x", (2,), dtype="float32")[...] = [1, 2]


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/keras_h5")
