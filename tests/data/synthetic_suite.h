// A test suite over one small synthetic set (24 images, 4 shapes an image at most) and the
// bundled WordPiece tokenizer, made once per suite that derives from SyntheticSuite.
#pragma once
#include <gtest/gtest.h>

#include "test_util.h"
#include "wico/data/refer.h"
#include "wico/data/synthetic.h"
#include "wico/data/tokenizer.h"
#include "wico/data/tokenizer_config.h"

namespace wico::data::test_support {

class SyntheticSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    generate_synthetic({dir_->path(), 24, 4, 2, false});
    data_ = new ReferDataset(ReferDataset::load(dir_->path(), "refcoco", "unc"));
    TokenizerOptions o;
    o.vocab_path = bundled_vocab("wordpiece");
    tokenizer_ = make_tokenizer("wordpiece", o).release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete data_;
    delete dir_;
    tokenizer_ = nullptr;
    data_ = nullptr;
    dir_ = nullptr;
  }
  inline static test::TempDir* dir_ = nullptr;
  inline static ReferDataset* data_ = nullptr;
  inline static Tokenizer* tokenizer_ = nullptr;
};

}  // namespace wico::data::test_support
