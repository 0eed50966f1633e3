// libFuzzer target for the text files a tokenizer reads: the first byte picks WordPiece's
// vocab.txt, GloVe's text vectors or predictions.jsonl; the rest is the file. Anything must load
// (and tokenize a sentence) or throw wico::Error.
#include <cstdint>

#include "fuzz_util.h"
#include "wico/core/error.h"
#include "wico/data/glove.h"
#include "wico/data/wordpiece.h"
#include "wico/eval/predictions.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text = wico::fuzz::as_text(data + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0: {
        const auto file = wico::fuzz::write_file("vocab.txt", text);
        const wico::data::WordPiece tokenizer(file.string());
        (void)tokenizer.encode("the man on the left, in a red shirt");
        break;
      }
      case 1: {
        const auto file = wico::fuzz::write_file("vectors.txt", text);
        (void)wico::data::GloveVectors::read_text(file);
        break;
      }
      default: {
        const auto file = wico::fuzz::write_file("predictions.jsonl", text);
        for (const auto& p : wico::eval::read_predictions(file)) {
          for (const auto& [name, counts] : p.masks) (void)p.rle(name);
        }
      }
    }
  } catch (const wico::Error&) {
  }
  return 0;
}
