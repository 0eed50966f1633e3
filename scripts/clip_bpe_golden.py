#!/usr/bin/env python3
"""Writes tests/data/clip_bpe_golden.tsv: CLIP BPE ids computed by an independent Python version
of OpenAI CLIP's simple_tokenizer.py algorithm (no clip/ftfy/regex packages on Debian: the regex
is emulated with unicodedata categories, ftfy is skipped, html.unescape is the stdlib one).

Usage: python3 scripts/clip_bpe_golden.py assets/vocab/clip/bpe_simple_vocab_16e6.txt.gz \
           > tests/data/clip_bpe_golden.tsv
Each output line: the sentence, a tab, the ids with <|startoftext|> and <|endoftext|>.
"""
import gzip
import html
import sys
import unicodedata

SENTENCES = [
    "a photo of a cat",
    "man in black shirt and jeans",
    "guy holding purp umbrella in corner near us",
    "The LEFT-most zebra, partially hidden!",
    "it's the man's hat; they're here & we've 2 dogs",
    "  lots   of\tspace\n",
    "red fruit pur\u00e9e in a pink container",
    "second from right 1234",
    "Tom &amp; Jerry &lt;3",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "''s quoted 'word'",
    "unbelievably extraordinarily long words like antidisestablishmentarianism",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def is_letter(c):
    return unicodedata.category(c).startswith("L")


def is_number(c):
    return unicodedata.category(c).startswith("N")


def pre_tokenize(text):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        for special in ("<|startoftext|>", "<|endoftext|>"):
            if text.startswith(special, i):
                out.append(special)
                i += len(special)
                break
        else:
            for con in ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
                if text.startswith(con, i):
                    out.append(con)
                    i += len(con)
                    break
            else:
                j = i + 1
                if is_letter(c):
                    while j < len(text) and is_letter(text[j]):
                        j += 1
                elif not is_number(c):
                    while j < len(text) and not (text[j].isspace() or is_letter(text[j])
                                                 or is_number(text[j])):
                        j += 1
                out.append(text[i:j])
                i = j
    return out


def main():
    merges = gzip.open(sys.argv[1]).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    b2u = bytes_to_unicode()
    vocab = list(b2u.values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = {v: i for i, v in enumerate(vocab)}
    ranks = {m: i for i, m in enumerate(merges)}

    def bpe(token):
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), float("inf")), a, b) for a, b in zip(word, word[1:])]
            rank, first, second = min(pairs)
            if rank == float("inf"):
                break
            new, k = [], 0
            while k < len(word):
                if k + 1 < len(word) and word[k] == first and word[k + 1] == second:
                    new.append(first + second)
                    k += 2
                else:
                    new.append(word[k])
                    k += 1
            word = new
        return word

    for sentence in SENTENCES:
        text = html.unescape(html.unescape(sentence)).strip()
        text = " ".join(text.split()).lower()
        ids = [encoder["<|startoftext|>"]]
        for piece in pre_tokenize(text):
            mapped = "".join(b2u[b] for b in piece.encode("utf-8"))
            ids.extend(encoder[t] for t in bpe(mapped))
        ids.append(encoder["<|endoftext|>"])
        print(sentence.replace("\t", "\\t").replace("\n", "\\n") + "\t" + " ".join(map(str, ids)))


if __name__ == "__main__":
    main()
