// GloVe word vectors for VLT: the text format (a word with spaces, a duplicate, a trailing
// space), lookups with the original's zero vector for unknown words, sentences cut and padded,
// the binary cache's round trip, and the errors for malformed text and for a cache that is cut
// short or claims more than it holds.
#include "wico/data/glove.h"
#include "wico/data/tokenizer.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_util.h"
#include "wico/core/error.h"

namespace wico::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kTiny = fs::path(WICO_TEST_DATA_DIR) / "glove" / "tiny.txt";

TEST(Glove, ReadsTheTextFormat) {
  const GloveVectors g = GloveVectors::read(kTiny);
  EXPECT_EQ(g.dim(), 3);
  EXPECT_EQ(g.size(), 4);  // "the" twice: the first wins
  EXPECT_TRUE(at::equal(g.vector("the"), at::tensor({0.1f, 0.2f, 0.3f})));
  EXPECT_TRUE(at::equal(g.vector("man"), at::tensor({-1.0f, 0.5f, 0.25f})));
  EXPECT_TRUE(g.contains(". . ."));  // glove.840B's words with spaces
  EXPECT_TRUE(at::equal(g.vector("left"), at::tensor({0.0f, 0.0f, -0.5f})));
  EXPECT_TRUE(at::equal(g.vector("walks"), at::zeros({3})));  // unknown: zeros
}

TEST(Glove, SentencesAreCutAndPaddedWithZeroRows) {
  const GloveVectors g = GloveVectors::read(kTiny);
  const at::Tensor s = g.sentence("the man  walks left", 6);
  ASSERT_EQ(s.sizes(), (at::IntArrayRef{6, 3}));
  EXPECT_TRUE(at::equal(s[0], g.vector("the")));
  EXPECT_TRUE(at::equal(s[1], g.vector("man")));
  EXPECT_TRUE(at::equal(s[2], at::zeros({3})));  // unknown word
  EXPECT_TRUE(at::equal(s[3], g.vector("left")));
  EXPECT_TRUE(at::equal(s.narrow(0, 4, 2), at::zeros({2, 3})));  // padding
  const at::Tensor cut = g.sentence("the man walks left", 2);
  EXPECT_TRUE(at::equal(cut, s.narrow(0, 0, 2)));
}

TEST(Glove, CacheRoundTrip) {
  const test::TempDir dir;
  const GloveVectors text = GloveVectors::read(kTiny);
  text.write_cache(dir.path() / "tiny.glv");
  EXPECT_FALSE(fs::exists(dir.path() / "tiny.glv.tmp"));
  const GloveVectors cache = GloveVectors::read(dir.path() / "tiny.glv");  // found by its magic
  EXPECT_EQ(cache.words(), text.words());
  for (const auto& word : text.words()) {
    EXPECT_TRUE(at::equal(cache.vector(word), text.vector(word))) << word;
  }
}

TEST(Glove, MalformedTextNamesTheLine) {
  const test::TempDir dir;
  const fs::path bad = dir.write("bad.txt", "a 1 2 3\nb 0.1 x 0.3\n");
  std::string message = test::thrown_message<Error>([&] { (void)GloveVectors::read(bad); });
  EXPECT_THAT(message, HasSubstr("bad.txt:2"));
  EXPECT_THAT(message, HasSubstr("'x', not a float"));
  const fs::path short_line = dir.write("short.txt", "a 1 2 3\nb 0.1\n");
  message = test::thrown_message<Error>([&] { (void)GloveVectors::read(short_line); });
  EXPECT_THAT(message, HasSubstr("short.txt:2"));
  EXPECT_THAT(message, HasSubstr("expected a word and 3 numbers"));
  const fs::path empty = dir.write("empty.txt", "\n");
  EXPECT_THAT(test::thrown_message<Error>([&] { (void)GloveVectors::read(empty); }),
              HasSubstr("no word vectors"));
}

// Every cut of a cache, and a header claiming 2^40 words, is an Error naming a byte offset (not
// an allocation of what the header claims).
TEST(Glove, CorruptCachesAreErrorsWithTheOffset) {
  const test::TempDir dir;
  GloveVectors::read(kTiny).write_cache(dir.path() / "full.glv");
  std::ifstream in(dir.path() / "full.glv", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (std::size_t keep = 8; keep < bytes.size(); ++keep) {
    const fs::path cut = dir.write("cut.glv", bytes.substr(0, keep));
    const std::string message =
        test::thrown_message<Error>([&] { (void)GloveVectors::read_cache(cut); });
    EXPECT_THAT(message, HasSubstr("byte offset")) << keep << " bytes";
  }
  std::string huge = bytes;
  const std::uint64_t count = std::uint64_t{1} << 40;
  std::memcpy(huge.data() + 12, &count, 8);
  const fs::path claims = dir.write("huge.glv", huge);
  EXPECT_THAT(test::thrown_message<Error>([&] { (void)GloveVectors::read_cache(claims); }),
              HasSubstr("byte offset 8"));
}

// The glove tokenizer: whitespace words (runs of spaces and tabs split as str.split()), ids
// 1 + the word's row ("the" row 0, "man" row 1; the second "the" line is not a new row), 0 for an
// unknown word and for pads, the mask over the words, the first max_length words kept.
TokenizerOptions tiny_vectors(int max_length) {
  TokenizerOptions o;
  o.vocab_path = kTiny.string();
  o.max_length = max_length;
  return o;
}

TEST(GloveTokenizer, IdsAreRowsPlusOneAndZeroForUnknown) {
  const auto tokenizer = make_tokenizer("glove", tiny_vectors(5));
  EXPECT_EQ(tokenizer->name(), "glove");
  EXPECT_EQ(tokenizer->vocab_size(), 5);  // 4 distinct words + the zero row
  const Encoding e = tokenizer->encode("  the\tman  zebra left ");
  EXPECT_EQ(e.ids, (std::vector<std::int64_t>{1, 2, 0, 4, 0}));
  EXPECT_EQ(e.attention_mask, (std::vector<std::int64_t>{1, 1, 1, 1, 0}));
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"the", "man", "zebra", "left"}));
  const Encoding cut = tokenizer->encode("the the the the the the man");
  EXPECT_EQ(cut.ids, (std::vector<std::int64_t>{1, 1, 1, 1, 1}));
  EXPECT_EQ(make_tokenizer("glove", tiny_vectors(0))->max_length(), 15);  // VLT's RefCOCO
  // One copy of the vectors per file while held.
  EXPECT_EQ(GloveVectors::shared(kTiny).get(), GloveVectors::shared(kTiny).get());
}

}  // namespace
}  // namespace wico::data
