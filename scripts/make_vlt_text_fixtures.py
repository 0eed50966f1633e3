#!/usr/bin/env python3
"""VLT's text branch written from Keras 2.3.1's documented formulas in numpy (no TensorFlow on
Debian), for tests/bottomup/vlt_text_test.cpp:

  GRU (reset_after=False, tanh, sigmoid gates, bias on, zero initial state, no masking), column
  blocks [z | r | h]:  z = sig(x Wz + bz + h Uz), r = sig(x Wr + br + h Ur),
                       h~ = tanh(x Wh + bh + (r*h) Uh), h' = z*h + (1-z)*h~
  Bidirectional(merge_mode='sum'): the backward GRU reads the sequence from its end; its outputs
  reversed back to time order and added to the forward ones
  sentence vector: softmax over the steps, per channel, of tanh(Dense(fq_word)); sum of
  weights * fq_word over the steps (pads included)

Two sentences of 7 steps, the second with 3 zero rows of padding at the tail (the backward GRU
reads them first). Weights are saved in our parameter names (the GRUs in Keras's own layout; the
Dense kernel [in, out] transposed to Linear's [out, in]).

  /usr/bin/python3 scripts/make_vlt_text_fixtures.py tests/data/vlt_text
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_fixture import write_fixture  # noqa: E402

IN, UNITS, STEPS, BATCH = 6, 5, 7, 2
rng = np.random.default_rng(23)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gru(x, kernel, recurrent, bias):
    u = recurrent.shape[0]
    h = np.zeros((x.shape[0], u))
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t] @ kernel + bias
        z = sigmoid(xt[:, :u] + h @ recurrent[:, :u])
        r = sigmoid(xt[:, u:2 * u] + h @ recurrent[:, u:2 * u])
        hh = np.tanh(xt[:, 2 * u:] + (r * h) @ recurrent[:, 2 * u:])
        h = z * h + (1 - z) * hh
        out.append(h)
    return np.stack(out, 1)


def main(out_dir):
    def f32(a):
        return a.astype(np.float32).astype(np.float64)

    w = {}
    for d in ("forward_gru", "backward_gru"):
        w[d + ".kernel"] = f32(rng.normal(0, 0.5, (IN, 3 * UNITS)))
        w[d + ".recurrent_kernel"] = f32(rng.normal(0, 0.5, (UNITS, 3 * UNITS)))
        w[d + ".bias"] = f32(rng.normal(0, 0.3, 3 * UNITS))
    dense_kernel = f32(rng.normal(0, 0.5, (UNITS, UNITS)))  # Keras Dense: [in, out]
    dense_bias = f32(rng.normal(0, 0.3, UNITS))
    x = f32(rng.normal(0, 1, (BATCH, STEPS, IN)))
    x[1, 4:] = 0  # padding: zero vectors, run through the recurrence

    fwd = gru(x, w["forward_gru.kernel"], w["forward_gru.recurrent_kernel"], w["forward_gru.bias"])
    bwd = gru(x[:, ::-1], w["backward_gru.kernel"], w["backward_gru.recurrent_kernel"],
              w["backward_gru.bias"])[:, ::-1]
    words = fwd + bwd
    scores = np.tanh(words @ dense_kernel + dense_bias)
    e = np.exp(scores - scores.max(1, keepdims=True))
    weights = e / e.sum(1, keepdims=True)
    sentence = (weights * words).sum(1)

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.float32))  # noqa: E731
    tensors = {"weights." + k: t(v) for k, v in w.items()}
    tensors["weights.attention.weight"] = t(dense_kernel.T)
    tensors["weights.attention.bias"] = t(dense_bias)
    tensors["input"] = t(x)
    tensors["forward_states"] = t(fwd)
    tensors["words"] = t(words)
    tensors["sentence"] = t(sentence)
    write_fixture(out_dir, "vlt_text", tensors,
                  {"input_dim": IN, "units": UNITS, "steps": STEPS, "padded_from": 4})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/vlt_text")
