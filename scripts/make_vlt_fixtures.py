#!/usr/bin/env python3
"""The whole VLT network (henghuiding/Vision-Language-Transformer model/vlt_model.py,
model/transfromer_model.py, keras-transformer 0.38 and its CyberZHG dependencies) written from
Keras 2.3.1's documented layer formulas in numpy, channels last with Keras's kernel layouts (no
torch in the computation, nothing of our NCHW code reused), at narrow widths and the original's
depths, so that every Keras layer name of a released best_map.h5 occurs:

  Darknet-53 + 6 head CBLs      make_darknet_fixtures.py (conv2d_1..58)
  Bi-GRU, word attention        make_vlt_text_fixtures.py (bidirectional_1, dense_1)
  simple fusion                 Fv' = Fv0 + CBL3(CBL1(Fv0)); g = leaky(BN(Dense(fq)));
                                Fm = leaky(BN(Fv' * g))
  neck                          up_proj_cat_proj / pool_proj_cat_proj / proj_cat as the original
  QGM                           concat_coord (x x x y y y), 3 x CBL3, Conv1 (bias) -> Nq maps,
                                Dense(relu) over the flattened maps, Dense(relu) on the words,
                                TrigPosEmbedding (add), Dense(relu) q/k/v, MultiHeadAttention
                                (relu on Wq, Wk, Wv and Wo), + the query vectors
  transformer                   post-norm: LN(x + Drop(sublayer(x))), LN eps 1e-14, causal
                                decoder self-attention (-10000 on later keys), FeedForward relu
  QBM                           c = sigmoid(Dense1(relu(Dense([relu(Dense(D)), relu(Dense(Fq))]))))
  responses and head            relu(Dense(c * D)) -> maps; CBL3 x 3, (Up2, CBL3) x 3, Conv3 (bias)

Inference (moving statistics, no dropout) and the training phase with dropout off (every batch
norm on the batch's statistics) are both written. Weights go to vlt_keras.h5 in Keras's
save_weights layout under the names a fresh Keras session gives the original's layers; the GRU
and the attention weights carry their scope prefixes, as Keras names them.

  /usr/bin/python3 scripts/make_vlt_fixtures.py tests/data/vlt
"""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_darknet_fixtures as dn  # noqa: E402
from make_vlt_text_fixtures import gru  # noqa: E402
from tensor_fixture import write_fixture  # noqa: E402

SIZE, BATCH, STEPS, WORD_DIM, UNITS = 64, 2, 7, 6, 8
HIDDEN, HEADS, TF_WIDTH, QUERIES, FFN = 16, 4, 12, 5, 10
rng = np.random.default_rng(29)


def f32(a):
    return np.asarray(a).astype(np.float32).astype(np.float64)


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Weights:
    """Random weights by Keras layer name, recorded with their Keras weight names."""

    def __init__(self):
        self.layers = {}  # layer name -> [(weight name, array)]
        self.order = []

    def add(self, layer, weights):
        self.order.append(layer)
        self.layers[layer] = [(n, f32(a)) for n, a in weights]
        # by the weight's last name part: kernel, gamma, ..., <layer>_Wq
        return {n.split("/")[-1][:-2]: a for n, a in self.layers[layer]}


W = Weights()
counters = {"conv2d": 58, "batch_normalization": 58, "dense": 0}


def next_name(kind):
    counters[kind] += 1
    return f"{kind}_{counters[kind]}"


def bn_weights(c):
    name = next_name("batch_normalization")
    return W.add(name, [(f"{name}/gamma:0", rng.uniform(0.5, 1.5, c)),
                        (f"{name}/beta:0", rng.normal(0, 0.2, c)),
                        (f"{name}/moving_mean:0", rng.normal(0, 0.2, c)),
                        (f"{name}/moving_variance:0", rng.uniform(0.5, 1.5, c))])


def batch_norm(x, w, training):
    axes = tuple(range(x.ndim - 1))
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = w["moving_mean"], w["moving_variance"]
    return (x - mean) / np.sqrt(var + 1e-3) * w["gamma"] + w["beta"]


class Cbl:
    def __init__(self, c_in, c_out, k):
        name = next_name("conv2d")
        self.conv = W.add(name, [(f"{name}/kernel:0",
                                  rng.normal(0, (k * k * c_in) ** -0.5, (k, k, c_in, c_out)))])
        self.bn = bn_weights(c_out)

    def __call__(self, x, training):
        return dn.leaky(batch_norm(dn.conv(x, self.conv["kernel"], 1), self.bn, training))


class Conv:
    def __init__(self, c_in, c_out, k):
        name = next_name("conv2d")
        self.w = W.add(name, [(f"{name}/kernel:0",
                               rng.normal(0, (k * k * c_in) ** -0.5, (k, k, c_in, c_out))),
                              (f"{name}/bias:0", rng.normal(0, 0.2, c_out))])

    def __call__(self, x):
        return dn.conv(x, self.w["kernel"], 1) + self.w["bias"]


class Dense:
    def __init__(self, c_in, c_out, name=None):
        name = name or next_name("dense")
        self.w = W.add(name, [(f"{name}/kernel:0", rng.normal(0, c_in ** -0.5, (c_in, c_out))),
                              (f"{name}/bias:0", rng.normal(0, 0.2, c_out))])

    def __call__(self, x):
        return x @ self.w["kernel"] + self.w["bias"]


class Mha:
    """keras-multi-head 0.28 MultiHeadAttention(head_num, activation='relu')."""

    def __init__(self, name, dim):
        ws = []
        for p in "qkvo":
            ws.append((f"{name}/{name}_W{p}:0", rng.normal(0, dim ** -0.5, (dim, dim))))
            ws.append((f"{name}/{name}_b{p}:0", rng.normal(0, 0.2, dim)))
        self.w = {n[-2:]: a for n, a in W.add(name, ws).items()}  # Wq, bq, ...

    def __call__(self, q, k, v, causal=False):
        q = relu(q @ self.w["Wq"] + self.w["bq"])
        k = relu(k @ self.w["Wk"] + self.w["bk"])
        v = relu(v @ self.w["Wv"] + self.w["bv"])
        b, lq, d = q.shape
        lk, dh = k.shape[1], d // HEADS

        def heads(x, n):  # _reshape_to_batches: [B, L, h, dh] -> [B, h, L, dh]
            return x.reshape(b, n, HEADS, dh).transpose(0, 2, 1, 3)

        e = heads(q, lq) @ heads(k, lk).transpose(0, 1, 3, 2) / np.sqrt(dh)
        if causal:
            e = e - 10000.0 * (np.arange(lk)[None, :] > np.arange(lq)[:, None])
        y = (softmax(e, -1) @ heads(v, lk)).transpose(0, 2, 1, 3).reshape(b, lq, d)
        return relu(y @ self.w["Wo"] + self.w["bo"])


class FeedForward:
    def __init__(self, name, dim, units):
        ws = W.add(name, [(f"{name}/{name}_W1:0", rng.normal(0, dim ** -0.5, (dim, units))),
                          (f"{name}/{name}_b1:0", rng.normal(0, 0.2, units)),
                          (f"{name}/{name}_W2:0", rng.normal(0, units ** -0.5, (units, dim))),
                          (f"{name}/{name}_b2:0", rng.normal(0, 0.2, dim))])
        self.w = {n[-2:]: a for n, a in ws.items()}  # W1, b1, W2, b2

    def __call__(self, x):
        return relu(x @ self.w["W1"] + self.w["b1"]) @ self.w["W2"] + self.w["b2"]


class LayerNorm:
    def __init__(self, name, dim):
        self.w = W.add(name, [(f"{name}/gamma:0", rng.uniform(0.5, 1.5, dim)),
                              (f"{name}/beta:0", rng.normal(0, 0.2, dim))])

    def __call__(self, x):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-14) * self.w["gamma"] + self.w["beta"]


def positions(length, dim):
    p = np.arange(length)[:, None].astype(np.float32)
    inv = (1.0 / np.power(np.float32(10000.0), np.arange(0, dim, 2, dtype=np.float32) / dim))
    angle = (p * inv.astype(np.float32)).astype(np.float32)
    out = np.zeros((length, dim))
    out[:, 0::2], out[:, 1::2] = np.sin(angle), np.cos(angle)
    return out


def up2(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def avg_pool2(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def concat_coord(x):
    b, h, w, _ = x.shape
    xs = np.broadcast_to((2.0 * np.arange(w) / (w - 1) - 1)[None, None, :, None], (b, h, w, 1))
    ys = np.broadcast_to((2.0 * np.arange(h) / (h - 1) - 1)[None, :, None, None], (b, h, w, 1))
    return np.concatenate([x, xs, xs, xs, ys, ys, ys], -1)


def build():
    """The layers after the Darknet, in the original's creation order."""
    J = dn.WIDTH * 32
    c16, c8 = dn.WIDTH * 16, dn.WIDTH * 8
    m = {}
    # build_nlp_model: the Bi-GRU, then dense_1.
    gw = []
    for d in ("forward", "backward"):
        gw += [(f"bidirectional_1/{d}_gru_1/kernel:0", rng.normal(0, 0.5, (WORD_DIM, 3 * UNITS))),
               (f"bidirectional_1/{d}_gru_1/recurrent_kernel:0",
                rng.normal(0, 0.5, (UNITS, 3 * UNITS))),
               (f"bidirectional_1/{d}_gru_1/bias:0", rng.normal(0, 0.3, 3 * UNITS))]
    W.add("bidirectional_1", gw)
    m["gru"] = {n: a for n, a in W.layers["bidirectional_1"]}
    m["word_att"] = Dense(UNITS, UNITS)
    # simple_fusion
    m["fusion_reduce"], m["fusion_expand"] = Cbl(J, J // 2, 1), Cbl(J // 2, J, 3)
    m["gate"] = Dense(UNITS, J)
    m["gate_bn"], m["fusion_bn"] = bn_weights(J), bn_weights(J)
    # neck
    m["mid_lateral"], m["mid_out"] = Cbl(c16, c16, 1), Cbl(J + c16, J // 2, 1)
    m["query_lateral"], m["query_out"] = Cbl(c8, c8, 1), Cbl(J // 2 + c8, J // 2, 1)
    m["tf_reduce"], m["tf_expand"] = Cbl(J // 2, J // 4, 1), Cbl(J // 4, J // 2, 3)
    m["tf_lateral"], m["tf_out"] = Cbl(J, J // 2, 1), Cbl(J + J // 2, TF_WIDTH, 1)
    m["tf_proj"] = Cbl(TF_WIDTH, HIDDEN, 1)
    # vlt_querynet
    qc = J // 2 + 6
    m["query_convs"] = [Cbl(qc, qc, 3) for _ in range(3)]
    m["query_maps"] = Conv(qc, QUERIES, 1)
    # vlt_transformer, lang_tf_enc
    positions_count = (SIZE // 16) ** 2
    m["query_vectors"], m["word_features"] = Dense(positions_count, HIDDEN), Dense(UNITS, HIDDEN)
    m["q_in"], m["k_in"], m["v_in"] = Dense(HIDDEN, HIDDEN), Dense(HIDDEN, HIDDEN), Dense(HIDDEN, HIDDEN)
    m["word_attention"] = Mha("multi_head_attention_1", HIDDEN)
    # ref_tf
    m["encoder"] = []
    for i in (1, 2):
        n = f"Encoder-{i}"
        m["encoder"].append({
            "att": Mha(f"{n}-MultiHeadSelfAttention", HIDDEN),
            "att_norm": LayerNorm(f"{n}-MultiHeadSelfAttention-Norm", HIDDEN),
            "ffn": FeedForward(f"{n}-FeedForward", HIDDEN, FFN),
            "ffn_norm": LayerNorm(f"{n}-FeedForward-Norm", HIDDEN)})
    m["decoder"] = []
    for i in (1, 2):
        n = f"Decoder-{i}"
        m["decoder"].append({
            "self": Mha(f"{n}-MultiHeadSelfAttention", HIDDEN),
            "self_norm": LayerNorm(f"{n}-MultiHeadSelfAttention-Norm", HIDDEN),
            "cross": Mha(f"{n}-MultiHeadQueryAttention", HIDDEN),
            "cross_norm": LayerNorm(f"{n}-MultiHeadQueryAttention-Norm", HIDDEN),
            "ffn": FeedForward(f"{n}-FeedForward", HIDDEN, FFN),
            "ffn_norm": LayerNorm(f"{n}-FeedForward-Norm", HIDDEN)})
    m["bal_query"], m["bal_output"] = Dense(HIDDEN, HIDDEN), Dense(HIDDEN, HIDDEN)
    m["bal_fuse"], m["bal_conf"] = Dense(2 * HIDDEN, HIDDEN), Dense(HIDDEN, 1)
    m["responses"] = Dense(HIDDEN, positions_count)
    # the head: vlt_transformer's CBL, vlt_postproc's five, the final conv
    m["head"] = [Cbl(QUERIES, HIDDEN, 3)] + [Cbl(HIDDEN, HIDDEN, 3) for _ in range(5)]
    m["head_out"] = Conv(HIDDEN, 1, 3)
    return m


def forward(m, darknet_layers, images, words_in, training):
    taps = dn.forward(images, darknet_layers, training)
    fv0, fv1, fv2 = taps["stride32"], taps["stride16"], taps["stride8"]
    g = m["gru"]
    fwd = gru(words_in, g["bidirectional_1/forward_gru_1/kernel:0"],
              g["bidirectional_1/forward_gru_1/recurrent_kernel:0"],
              g["bidirectional_1/forward_gru_1/bias:0"])
    bwd = gru(words_in[:, ::-1], g["bidirectional_1/backward_gru_1/kernel:0"],
              g["bidirectional_1/backward_gru_1/recurrent_kernel:0"],
              g["bidirectional_1/backward_gru_1/bias:0"])[:, ::-1]
    fq_word = fwd + bwd
    fq = (softmax(np.tanh(m["word_att"](fq_word)), 1) * fq_word).sum(1)

    fv = fv0 + m["fusion_expand"](m["fusion_reduce"](fv0, training), training)
    gate = dn.leaky(batch_norm(m["gate"](fq), m["gate_bn"], training))
    fm = dn.leaky(batch_norm(fv * gate[:, None, None, :], m["fusion_bn"], training))

    up = up2(fm)
    a = m["mid_out"](np.concatenate([up, m["mid_lateral"](fv1, training)], -1), training)
    q = m["query_out"](np.concatenate([a, m["query_lateral"](avg_pool2(fv2), training)], -1),
                       training)
    mid_tf = np.concatenate([m["tf_expand"](m["tf_reduce"](q, training), training), a], -1)
    f_tf = m["tf_proj"](m["tf_out"](np.concatenate([up, m["tf_lateral"](mid_tf, training)], -1),
                                    training), training)

    x = concat_coord(q)
    for c in m["query_convs"]:
        x = c(x, training)
    maps = m["query_maps"](x)  # [B, h, w, Nq]
    b, h, w, nq = maps.shape
    query_flat = maps.reshape(b, h * w, nq).transpose(0, 2, 1)  # Reshape, Permute((2, 1))
    vectors = relu(m["query_vectors"](query_flat))
    lang = relu(m["word_features"](fq_word))
    vp = vectors + positions(nq, HIDDEN)
    lp = lang + positions(lang.shape[1], HIDDEN)
    fq_queries = m["word_attention"](relu(m["q_in"](vp)), relu(m["k_in"](lp)),
                                     relu(m["v_in"](lp))) + vectors

    enc = f_tf.reshape(b, h * w, HIDDEN) + positions(h * w, HIDDEN)
    for layer in m["encoder"]:
        enc = layer["att_norm"](enc + layer["att"](enc, enc, enc))
        enc = layer["ffn_norm"](enc + layer["ffn"](enc))
    dec = fq_queries + positions(nq, HIDDEN)
    for layer in m["decoder"]:
        dec = layer["self_norm"](dec + layer["self"](dec, dec, dec, causal=True))
        dec = layer["cross_norm"](dec + layer["cross"](dec, enc, enc))
        dec = layer["ffn_norm"](dec + layer["ffn"](dec))

    qp = relu(m["bal_query"](fq_queries))
    op = relu(m["bal_output"](dec))
    conf = sigmoid(m["bal_conf"](relu(m["bal_fuse"](np.concatenate([op, qp], -1)))))
    resp = relu(m["responses"](conf * dec))  # [B, Nq, h*w]
    x = resp.reshape(b, nq, h, w).transpose(0, 2, 3, 1)  # Reshape((Nq, h, w)), Permute((2, 3, 1))
    head = m["head"]
    x = head[2](head[1](head[0](x, training), training), training)
    x = head[3](up2(x), training)
    x = head[4](up2(x), training)
    embeddings = head[5](up2(x), training)
    logits = m["head_out"](embeddings)
    return {"logits": logits, "pixel_embeddings": embeddings, "confidence": conf[..., 0],
            "f_tf": f_tf, "queries": fq_queries}


def write_h5(path, darknet_layers):
    order, weights = [], {}
    for k, w in enumerate(darknet_layers, start=1):
        order += [f"conv2d_{k}", f"batch_normalization_{k}"]
        weights[f"conv2d_{k}"] = [(f"conv2d_{k}/kernel:0", w["kernel"])]
        weights[f"batch_normalization_{k}"] = [
            (f"batch_normalization_{k}/{n}:0", w[n])
            for n in ("gamma", "beta", "moving_mean", "moving_variance")]
    order += W.order + ["leaky_re_lu_1", "Encoder-Embedding"]  # weightless layers are listed too
    weights.update(W.layers)
    with h5py.File(path, "w") as f:
        # model.save's layout: the weights under model_weights.
        dn.write_keras_layers(f.create_group("model_weights"), order, weights)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    darknet_layers = dn.make_layers()
    for w in darknet_layers:
        for key in ("kernel", "gamma", "beta", "moving_mean", "moving_variance"):
            w[key] = f32(w[key])
    m = build()
    write_h5(os.path.join(out_dir, "vlt_keras.h5"), darknet_layers)
    images = f32(rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3)))
    words = f32(rng.normal(0, 1, (BATCH, STEPS, WORD_DIM)))
    words[1, 4:] = 0  # pads
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.float32))  # noqa: E731
    tensors = {"images": t(images.transpose(0, 3, 1, 2)), "words": t(words)}
    for phase, training in (("eval", False), ("train", True)):
        out = forward(m, darknet_layers, images, words, training)
        tensors[f"{phase}.logits"] = t(out["logits"].transpose(0, 3, 1, 2))
        tensors[f"{phase}.pixel_embeddings"] = t(out["pixel_embeddings"].transpose(0, 3, 1, 2))
        tensors[f"{phase}.f_tf"] = t(out["f_tf"].transpose(0, 3, 1, 2))
        tensors[f"{phase}.confidence"] = t(out["confidence"])
        tensors[f"{phase}.queries"] = t(out["queries"])
    write_fixture(out_dir, "vlt", tensors, {
        "size": SIZE, "darknet_width": dn.WIDTH, "word_dim": WORD_DIM, "units": UNITS,
        "hidden": HIDDEN, "heads": HEADS, "tf_width": TF_WIDTH, "queries": QUERIES, "ffn": FFN,
        "steps": STEPS, "keras_layers_with_weights": 58 * 2 + len(W.order)})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/vlt")
