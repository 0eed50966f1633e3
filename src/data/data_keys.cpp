// Configuration keys of the data component: where the data set is, which split, how samples are
// drawn, transformed, tokenised and loaded.
#include "wico/core/schema.h"

namespace wico {

void add_data_keys(Schema& schema) {
  schema.text("data.root", "data/synthetic",
              "data root in the refer layout: images/train2014/, <dataset>/instances.json, "
              "<dataset>/refs(<split_by>).p")
      .text("data.dataset", "refcoco", "which data set", {"refcoco", "refcoco+", "refcocog"})
      .text("data.split_by", "unc", "split family: refcoco unc|google, refcoco+ unc, "
            "refcocog umd|google", {"unc", "google", "umd"})
      .text("data.train_split", "train", "split trained on")
      .texts("data.eval_splits", {"val", "testA", "testB"}, "splits evaluated")
      .text("data.train_sentences", "sample",
            "training: one sentence drawn per ref each epoch (sample) or every sentence (all)",
            {"sample", "all"})
      .text("data.sentence_field", "raw",
            "the refer sentence field read: raw (as typed; LAVT) or sent (lower-cased, "
            "re-tokenised; CRIS)", {"raw", "sent"})
      .text("data.train_on", "refs",
            "training samples: the train split's refs (refs), or one per image of instances.json "
            "(instance_images: an instance extractor's own training, stage 1 of the top-down "
            "protocol)", {"refs", "instance_images"})
      .flag("data.exclude_eval_images", true,
            "data.train_on instance_images: leave out every image of the data set's val/test "
            "splits (COCO-trained detectors saw them; MAttNet's detector is coco_minus_refer)")
      .integer("data.attribute_words", 0,
               "MAttNet's attribute vocabulary: the K lexicon words mentioned by the most "
               "training refs (the original's top 50), labels of the matcher's attribute head; "
               "0: no attribute branch", 0, 100000)
      .text("data.attribute_lexicon", "",
            "file of attribute words, one per line; empty: the built-in lexicon (colours, "
            "patterns, materials, sizes, ages)")
      .text("data.on_bad_sample", "error",
            "a missing or corrupt image: stop with an error, or skip it and count it in the log",
            {"error", "skip"})
      .integer("data.input_size", 480, "network input side S (LAVT 480, CRIS/VLT 416)", 16, 4096)
      .text("data.resize", "plain", "plain: resize to S x S (LAVT); letterbox: keep the aspect "
            "ratio, warp onto a canvas of the normalisation mean (CRIS); paste: MCN/VLT's "
            "letterbox (resize to int(w s) x int(h s), paste centred on the normalisation's "
            "fill); shortest_edge: detectron2's "
            "ResizeShortestEdge (data.min_size, data.max_size; Mask2Former's test-time resize), "
            "the canvas padded to data.size_divisibility, not square",
            {"plain", "letterbox", "paste", "shortest_edge"})
      .integer("data.min_size", 800, "shortest_edge: the shorter side's length (800)", 1, 65536)
      .integer("data.max_size", 1333, "shortest_edge: the longer side's cap (1333)", 1, 65536)
      .integer("data.size_divisibility", 32, "shortest_edge: canvas sides a multiple of this (32)",
               1, 4096)
      .text("data.augment", "none",
            "training augmentation: none, or lsj (Mask2Former's large-scale jitter: flip, scale "
            "data.lsj_scale of S = data.input_size, crop or pad to S; only with data.train_on "
            "instance_images, as flips and crops break referring expressions)",
            {"none", "lsj"})
      .reals("data.lsj_scale", {0.1, 2.0}, "lsj: the scale range (Mask2Former: 0.1 to 2.0)", 0.0)
      .text("data.resize_filter", "opencv", "plain resize: OpenCV bilinear/nearest, or Pillow's "
            "antialiased BILINEAR and NEAREST exactly as LAVT's torchvision does (pil)",
            {"opencv", "pil"})
      .text("data.mask_rule", "union", "target from a ref's polygon parts: any part (union), or "
            "exactly one part, overlaps cancelling, as LAVT's `== 1` (lavt)", {"union", "lavt"})
      .flag("data.soft_targets", false,
            "the training target resampled bilinearly from its 0/255 mask and kept fractional "
            "at the edges (CRIS's soft masks); false: nearest, 0/1")
      .text("data.normalize", "imagenet",
            "mean/std of the backbone's pre-training; vlt: pixels / 255 as they are, the paste "
            "letterbox's border 0.5 (MCN/VLT)",
            {"imagenet", "clip", "vlt"})
      .integer("data.batch_size", 8, "samples per batch (per process)", 1, 65536)
      .integer("data.workers", 2, "loader worker threads", 0, 256)
      .integer("data.prefetch", 4, "batches prepared ahead of the consumer", 1, 1024)
      .text("text.tokenizer", "wordpiece", "word (MAttNet vocabulary from the training split), "
            "wordpiece (BERT), clip (CLIP BPE), glove (whitespace words as rows of fixed word "
            "vectors: VLT)", {"word", "wordpiece", "clip", "glove"})
      .text("text.vocab", "",
            "vocabulary file (BERT vocab.txt, CLIP merges .gz, a saved word list, or for glove "
            "the vectors: GloVe's text format or its cache); empty: the bundled one (wordpiece, "
            "clip), counted on the training split (word), or the synthetic set's random vectors "
            "<data.root>/word_vectors.txt (glove)")
      .integer("text.max_length", 20, "tokens per sentence including special tokens (LAVT 20, "
               "CRIS 17/22)", 2, 512)
      .integer("text.min_word_count", 1, "word tokenizer: words seen fewer times become UNK", 1,
               1000000);
}

}  // namespace wico
