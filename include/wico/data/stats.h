// `wico data stats`: what a data set holds (counts per split, sentence lengths, vocabulary) and a
// contact sheet of samples with their masks and expressions, to look at before training on it.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "wico/data/refer.h"

namespace wico::data {

class Tokenizer;

struct SplitStats {
  int refs = 0;
  int sentences = 0;
  int images = 0;
  double mean_words = 0;
  int max_words = 0;
  double mean_tokens = 0;     // with the configured tokenizer, special tokens included
  int truncated = 0;          // sentences longer than the tokenizer's max length
  double mean_mask_share = 0; // target mask area / image area
};

struct DatasetStats {
  std::string name;  // "refcoco (unc)"
  int images = 0;
  int annotations = 0;
  int categories = 0;
  int vocabulary = 0;  // distinct lower-cased words over all sentences
  std::map<std::string, SplitStats> splits;
  std::map<int, int> words_histogram;  // sentence length in words -> sentences
};

// `splits`: the splits to describe (with the refer API's rules).
DatasetStats compute_stats(const ReferDataset& data, const std::vector<std::string>& splits,
                           const Tokenizer* tokenizer);
void print_stats(const DatasetStats& stats, std::ostream& out);

// A grid of `count` samples of `split` (deterministic for `seed`): each image with its target
// mask tinted, its box, and the expression written under it. Written as PNG.
void write_contact_sheet(const ReferDataset& data, const std::string& split, int count,
                         unsigned seed, const std::filesystem::path& png);

}  // namespace wico::data
