// Tokenizers: exact ids against golden files (BERT WordPiece cases from llama.cpp, CLIP ids from
// scripts/clip_bpe_golden.py), padding/truncation rules, the word vocabulary and the factory.
#include "wico/data/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <numeric>
#include <sstream>

#include "test_util.h"
#include "wico/core/error.h"
#include "wico/data/clip_bpe.h"
#include "wico/data/word_vocab.h"
#include "wico/data/wordpiece.h"

namespace wico::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using test::TempDir;

const std::string kVocabDir = WICO_SOURCE_DIR "/assets/vocab";
const std::string kBertVocab = kVocabDir + "/bert-base-uncased/vocab.txt";
const std::string kClipMerges = kVocabDir + "/clip/bpe_simple_vocab_16e6.txt.gz";
const std::string kTestData = WICO_TEST_DATA_DIR;

const WordPiece& bert() {
  static const WordPiece tokenizer(kBertVocab);
  return tokenizer;
}
const ClipBpe& clip() {
  static const ClipBpe tokenizer(kClipMerges);
  return tokenizer;
}

std::vector<std::int64_t> parse_ids(const std::string& line) {
  std::vector<std::int64_t> ids;
  std::istringstream in(line);
  for (std::int64_t id; in >> id;) ids.push_back(id);
  return ids;
}

void expect_well_formed(const Encoding& e, const Tokenizer& t) {
  ASSERT_EQ(e.ids.size(), static_cast<std::size_t>(t.max_length()));
  ASSERT_EQ(e.attention_mask.size(), e.ids.size());
  const auto real = std::accumulate(e.attention_mask.begin(), e.attention_mask.end(), 0LL);
  EXPECT_EQ(static_cast<std::size_t>(real), e.tokens.size());
  for (std::size_t i = 0; i < e.ids.size(); ++i) {
    EXPECT_EQ(e.attention_mask[i], i < e.tokens.size() ? 1 : 0);
    if (i >= e.tokens.size()) {
      EXPECT_EQ(e.ids[i], t.pad_id());
    }
    EXPECT_GE(e.ids[i], 0);
    EXPECT_LT(e.ids[i], t.vocab_size());
  }
}

// The first-column sentences of the REFER sample csv (quoted, no embedded quotes).
std::vector<std::string> refer_sentences() {
  std::ifstream in(kTestData + "/refer/sentences_sample.csv");
  std::vector<std::string> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    const auto a = line.find('"');
    const auto b = line.find('"', a + 1);
    if (a != std::string::npos && b != std::string::npos) {
      out.push_back(line.substr(a + 1, b - a - 1));
    }
  }
  return out;
}

// ---- WordPiece ---------------------------------------------------------------------------------

TEST(WordPiece, ReadsTheBertVocabulary) {
  EXPECT_EQ(bert().vocab_size(), 30522);
  EXPECT_EQ(bert().pad_id(), 0);
  EXPECT_EQ(bert().unk_id(), 100);
  EXPECT_EQ(bert().cls_id(), 101);
  EXPECT_EQ(bert().sep_id(), 102);
  EXPECT_EQ(bert().id("the"), 1996);
  EXPECT_EQ(bert().max_length(), 20);
}

TEST(WordPiece, ReproducesAllGoldenCases) {
  // llama.cpp's format: inputs separated by "\n__ggml_vocab_test__\n"; one line of ids each.
  const std::string inp = test::read_file(kTestData + "/vocab/wordpiece-cases.inp");
  std::vector<std::string> inputs;
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::size_t pos = 0;
  while (true) {
    const auto next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    inputs.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(kTestData + "/vocab/wordpiece-cases.out");
  std::vector<std::vector<std::int64_t>> expected;
  for (std::string line; std::getline(out, line);) expected.push_back(parse_ids(line));
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_EQ(expected.size(), 46u);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(bert().tokenize_ids(inputs[i]), expected[i]) << "case " << i << ": " << inputs[i];
  }
}

TEST(WordPiece, BasicTokenizerSplitsPunctuationStripsAccentsAndIsolatesCjk) {
  EXPECT_THAT(WordPiece::basic_tokenize(" Hello,\tWORLD!! "),
              ElementsAre("hello", ",", "world", "!", "!"));
  EXPECT_THAT(WordPiece::basic_tokenize("Führer Ça"), ElementsAre("fuhrer", "ca"));
  EXPECT_THAT(WordPiece::basic_tokenize("ab\xE6\x88\x91" "cd"),
              ElementsAre("ab", "\xE6\x88\x91", "cd"));
  EXPECT_THAT(WordPiece::basic_tokenize("x\xE2\x80\x8Dy"), ElementsAre("xy"));  // ZWJ dropped
}

TEST(WordPiece, EncodeAddsSpecialsAndPads) {
  const Encoding e = bert().encode("man in black shirt");
  expect_well_formed(e, bert());
  EXPECT_THAT(std::vector<std::int64_t>(e.ids.begin(), e.ids.begin() + 7),
              ElementsAre(101, 2158, 1999, 2304, 3797, 102, 0));
  EXPECT_THAT(e.tokens, ElementsAre("[CLS]", "man", "in", "black", "shirt", "[SEP]"));
}

TEST(WordPiece, TruncatesLikeLavtKeepingTheFirstIds) {
  const WordPiece short_bert(kBertVocab, 5);
  const Encoding e = short_bert.encode("the man on the left wearing a hat");
  expect_well_formed(e, short_bert);
  // LAVT cuts encode(..., add_special_tokens=True) to max_tokens: [SEP] is lost.
  EXPECT_THAT(e.ids, ElementsAre(101, 1996, 2158, 2006, 1996));
  EXPECT_THAT(e.attention_mask, ElementsAre(1, 1, 1, 1, 1));
}

TEST(WordPiece, LongWordsAreUnknown) {
  EXPECT_THAT(bert().tokenize_ids(std::string(101, 'a')), ElementsAre(100));
  EXPECT_FALSE(bert().tokenize_ids(std::string(100, 'a')).empty());
}

TEST(WordPiece, RealReferSentencesHaveNoUnknownsAndFit) {
  const auto sentences = refer_sentences();
  ASSERT_GE(sentences.size(), 150u);
  for (const auto& s : sentences) {
    const Encoding e = bert().encode(s);
    expect_well_formed(e, bert());
    for (const auto& t : bert().tokenize(s)) EXPECT_NE(t, "[UNK]") << s;
    EXPECT_EQ(e.ids.front(), 101);
  }
}

TEST(WordPiece, MissingOrMalformedVocabularyNamesTheFile) {
  TempDir dir;
  try {
    WordPiece w((dir.path() / "nope.txt").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nope.txt"));
  }
  const auto bad = dir.write("bad.txt", "[PAD]\n[UNK]\n\n[CLS]\n");
  try {
    WordPiece w(bad.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad.txt:3"));
  }
  const auto no_cls = dir.write("nocls.txt", "[PAD]\n[UNK]\n[SEP]\n");
  EXPECT_THROW(WordPiece w(no_cls.string()), Error);
}

// ---- CLIP BPE ----------------------------------------------------------------------------------

TEST(ClipBpe, KnownIds) {
  EXPECT_EQ(clip().vocab_size(), 49408);
  EXPECT_THAT(clip().tokenize_ids("a photo of a cat"), ElementsAre(320, 1125, 539, 320, 2368));
  const Encoding e = clip().encode("a photo of a cat");
  expect_well_formed(e, clip());
  EXPECT_THAT(e.ids, ElementsAre(49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0, 0, 0, 0, 0, 0,
                                 0, 0));
  EXPECT_THAT(e.tokens, ElementsAre("<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>",
                                    "cat</w>", "<|endoftext|>"));
}

TEST(ClipBpe, MatchesTheGoldenFile) {
  std::ifstream in(kTestData + "/clip_bpe_golden.tsv");
  ASSERT_TRUE(in) << "missing clip_bpe_golden.tsv";
  int cases = 0;
  for (std::string line; std::getline(in, line);) {
    const auto tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    std::string sentence;
    for (std::size_t i = 0; i < tab; ++i) {  // undo the script's \t and \n escapes
      if (line[i] == '\\' && i + 1 < tab && (line[i + 1] == 't' || line[i + 1] == 'n')) {
        sentence += line[++i] == 't' ? '\t' : '\n';
      } else {
        sentence += line[i];
      }
    }
    const ClipBpe& c = clip();
    std::vector<std::int64_t> ids{ClipBpe::kStartOfText};
    for (auto id : c.tokenize_ids(sentence)) ids.push_back(id);
    ids.push_back(ClipBpe::kEndOfText);
    EXPECT_EQ(ids, parse_ids(line.substr(tab + 1))) << sentence;
    ++cases;
  }
  EXPECT_GE(cases, 10);
}

TEST(ClipBpe, PreTokenizerFollowsClipsPattern) {
  EXPECT_THAT(ClipBpe::pre_tokenize("it's 12 ''s a-b"),
              ElementsAre("it", "'s", "1", "2", "''", "s", "a", "-", "b"));
  EXPECT_EQ(ClipBpe::clean("  Tom &amp;amp;\t JERRY \n"), "tom & jerry");
}

TEST(ClipBpe, TruncatesLikeCrisEndingWithEot) {
  const ClipBpe short_clip(kClipMerges, 5);
  const Encoding e = short_clip.encode("a photo of a cat");
  expect_well_formed(e, short_clip);
  EXPECT_THAT(e.ids, ElementsAre(49406, 320, 1125, 539, 49407));
  const Encoding empty = short_clip.encode("");
  EXPECT_THAT(empty.ids, ElementsAre(49406, 49407, 0, 0, 0));
  EXPECT_THAT(empty.attention_mask, ElementsAre(1, 1, 0, 0, 0));
}

TEST(ClipBpe, RealReferSentencesFitTheContext) {
  const ClipBpe refcocog(kClipMerges, 22);
  for (const auto& s : refer_sentences()) {
    const Encoding e = refcocog.encode(s);
    expect_well_formed(e, refcocog);
    EXPECT_EQ(e.ids.front(), ClipBpe::kStartOfText);
    EXPECT_EQ(e.ids[e.tokens.size() - 1], ClipBpe::kEndOfText);
  }
}

TEST(ClipBpe, MissingOrMalformedMergesNameTheFile) {
  TempDir dir;
  try {
    ClipBpe c((dir.path() / "missing.txt.gz").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("missing.txt.gz"));
  }
  // gzopen reads uncompressed files transparently: a plain file tests the line checks.
  const auto bad = dir.write("bad.txt", "#version: 0.2\ni n\nt h e\n");
  try {
    ClipBpe c(bad.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad.txt:3"));
  }
  const auto short_file = dir.write("short.txt", "#version: 0.2\ni n\n");
  try {
    ClipBpe c(short_file.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("short.txt"));
  }
}

TEST(ClipBpe, ADecompressionBombIsAnErrorNotGigabytes) {
  TempDir dir;
  // 64 MB of one line, gzip-compressed to about 64 KB.
  const auto bomb = dir.path() / "bomb.txt.gz";
  gzFile out = gzopen(bomb.c_str(), "wb9");
  ASSERT_NE(out, nullptr);
  const std::string block(1 << 20, 'a');
  for (int i = 0; i < 64; ++i) gzwrite(out, block.data(), static_cast<unsigned>(block.size()));
  gzclose(out);
  ASSERT_LT(std::filesystem::file_size(bomb), 1u << 20);
  const std::string message = test::thrown_message<Error>([&] { ClipBpe c(bomb.string()); });
  EXPECT_THAT(message, HasSubstr("bomb.txt.gz' decompresses to more than 16 MB"));
}

// ---- word vocabulary ---------------------------------------------------------------------------

TEST(WordVocab, SplitsLowerCasedAlphanumericRuns) {
  EXPECT_THAT(WordVocab::split_words("The man's HAT, 2nd-from left!"),
              ElementsAre("the", "man", "s", "hat", "2nd", "from", "left"));
  EXPECT_THAT(WordVocab::split_words("pur\xC3\xA9" "e"), ElementsAre("pur\xC3\xA9" "e"));
}

TEST(WordVocab, ThresholdMapsRareWordsToUnk) {
  const WordVocab v = WordVocab::build({"man left", "man right", "man left", "zebra"}, 2, 4);
  EXPECT_THAT(v.words(), ElementsAre("<pad>", "<unk>", "man", "left"));
  EXPECT_EQ(v.vocab_size(), 4);
  const Encoding e = v.encode("Left zebra man");
  expect_well_formed(e, v);
  EXPECT_THAT(e.ids, ElementsAre(3, 1, 2, 0));
  EXPECT_THAT(e.tokens, ElementsAre("left", "<unk>", "man"));
  EXPECT_THAT(v.encode("man man man man man man").ids, ElementsAre(2, 2, 2, 2));
}

TEST(WordVocab, SaveLoadRoundTrip) {
  TempDir dir;
  const WordVocab v = WordVocab::build(refer_sentences(), 2, 10);
  const std::string path = (dir.path() / "vocab.txt").string();
  v.save(path);
  const WordVocab back = WordVocab::load(path, 10);
  EXPECT_EQ(back.words(), v.words());
  for (const auto& s : refer_sentences()) EXPECT_EQ(back.encode(s).ids, v.encode(s).ids);
}

TEST(WordVocab, LoadRejectsMalformedFiles) {
  TempDir dir;
  EXPECT_THROW(WordVocab::load((dir.path() / "none.txt").string()), Error);
  const auto bad = dir.write("v.txt", "<pad>\n<unk>\nman\nbad word\n");
  try {
    WordVocab::load(bad.string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("v.txt:4"));
  }
  const auto dup = dir.write("d.txt", "<pad>\n<unk>\nman\nman\n");
  EXPECT_THROW(WordVocab::load(dup.string()), Error);
  const auto order = dir.write("o.txt", "<unk>\n<pad>\n");
  EXPECT_THROW(WordVocab::load(order.string()), Error);
}

// ---- factory -----------------------------------------------------------------------------------

TEST(TokenizerFactory, BuildsEachKind) {
  TokenizerOptions o;
  o.vocab_path = kBertVocab;
  EXPECT_EQ(make_tokenizer("wordpiece", o)->name(), "wordpiece");
  o.vocab_path = kClipMerges;
  o.max_length = 22;
  const auto c = make_tokenizer("clip", o);
  EXPECT_EQ(c->name(), "clip");
  EXPECT_EQ(c->max_length(), 22);
  TokenizerOptions w;
  w.training_sentences = {"a b", "a"};
  const auto word = make_tokenizer("word", w);
  EXPECT_EQ(word->vocab_size(), 4);
  EXPECT_EQ(word->max_length(), WordVocab::kDefaultMaxLength);
}

TEST(TokenizerFactory, UnknownKindListsTheValidOnes) {
  try {
    make_tokenizer("sentencepiece");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("sentencepiece"));
    EXPECT_THAT(e.what(), HasSubstr("clip, glove, word, wordpiece"));
  }
  EXPECT_THROW(make_tokenizer("glove"), ConfigError);  // no vectors file
  EXPECT_THROW(make_tokenizer("wordpiece"), ConfigError);  // no vocab path
  EXPECT_THROW(make_tokenizer("word"), ConfigError);       // neither vocab nor sentences
}

}  // namespace
}  // namespace wico::data
