// Configuration keys of the training engine (and model.kind, which the trainer builds).
#include "wico/core/schema.h"

namespace wico {

void add_train_keys(Schema& schema) {
  schema.text("model.kind", "", "the model to build (a registered name; `wico train --list`)")
      .integer("train.iterations", 0, "optimiser steps (iteration-based run); 0: use train.epochs",
               0)
      .integer("train.epochs", 0, "epochs (epoch-based run); 0: use train.iterations", 0)
      .text("train.optimizer", "adamw", "optimiser", {"adamw", "adam"})
      .real("train.lr", 1e-4, "base learning rate", 0.0)
      .real("train.weight_decay", 0.0, "weight decay (decoupled for adamw)", 0.0)
      .reals("train.betas", {0.9, 0.999}, "Adam betas", 0.0, 1.0)
      .real("train.eps", 1e-8, "Adam epsilon", 0.0)
      .texts("train.param_groups", {},
             "'regex=multiplier' learning-rate multipliers by parameter name, first match wins; "
             "0 freezes (e.g. 'backbone\\.=0.1')")
      .integer("train.param_groups_from", 0,
               "epoch (epoch runs) or step from which train.param_groups' multipliers apply; "
               "before it every group trains at train.lr (CRIS: 1, its first epoch runs the "
               "backbone at the full rate)", 0)
      .texts("train.freeze", {}, "regexes of parameter names not trained")
      .texts("train.no_decay", {}, "regexes of parameter names without weight decay")
      .texts("train.no_decay_modules", {},
             "kinds of module whose parameters take no weight decay: norm (batch, group, layer "
             "norms), embedding (detectron2's WEIGHT_DECAY_NORM and WEIGHT_DECAY_EMBED of 0)",
             {"norm", "embedding"})
      .text("train.schedule", "constant", "learning-rate schedule",
            {"constant", "poly", "multistep", "exponential"})
      .real("train.poly_power", 0.9, "poly: lr * (1 - step/total)^power", 0.0)
      .integers("train.milestones", {}, "multistep: epochs (epoch runs) or steps where lr *= gamma",
                0)
      .real("train.gamma", 0.1, "multistep factor; exponential base", 0.0)
      .integer("train.decay_start", 0,
               "exponential: steps at the base rate before the decay (MAttNet: 8000)", 0)
      .integer("train.decay_every", 8000,
               "exponential: steps per factor gamma, continuously (MAttNet: 8000)", 1)
      .integer("train.warmup_iterations", 0, "linear warm-up steps", 0)
      .real("train.warmup_factor", 0.001, "warm-up starts at lr * this", 0.0, 1.0)
      .real("train.clip_grad_norm", 0.0, "clip the gradient norm to this; 0: off", 0.0)
      .real("train.clip_grad_value", 0.0,
            "clamp every gradient element to [-v, v] (MAttNet's clip_gradient 0.1); 0: off", 0.0)
      .integer("train.accumulate", 1, "batches accumulated per optimiser step", 1)
      .integer("train.log_every", 10, "steps per metrics.jsonl record", 1)
      .integer("train.val_every", 0,
               "validate every N steps; 0: each epoch (epoch runs) and at the end; -1: never", -1)
      .text("train.val_split", "val", "split validated on (empty: none)")
      .text("train.val_metric", "oiou", "metric that picks the best checkpoint",
            {"oiou", "miou", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9"})
      .integer("train.checkpoint_every", 0, "checkpoint every N steps; 0: each epoch or the end",
               0)
      .integer("train.keep_last", 3, "iteration checkpoints kept (best.pt is kept apart)", 1)
      .text("train.amp", "off", "mixed precision: bf16 (CPU or CUDA), fp16 (CUDA)",
            {"off", "bf16", "fp16"})
      .flag("train.skip_nonfinite", false,
            "skip a step whose loss or gradient is not finite instead of stopping")
      .text("train.batch_norm", "local",
            "batch norm in training: local statistics, frozen (eval mode, not trained), or sync "
            "(statistics across processes)",
            {"local", "frozen", "sync"})
      .text("train.frozen_modules", "eval",
            "modules none of whose parameters trains: eval (dropout off, batch-norm statistics "
            "kept) or train",
            {"eval", "train"})
      .texts("train.init", {},
             "weights loaded before training: 'checkpoint' or 'part=checkpoint' (a branch from "
             "its own run); a published file through a name map: 'map=NAME:file' (the whole "
             "model, strict) or 'part=map=NAME:file' (`wico weights maps` lists the maps)");
}

}  // namespace wico
