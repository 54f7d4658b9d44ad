"""A word-level CLIP BPE tokenizer for the tiny-shapes grammar.

Every word of the grammar is one token. Any other text still tokenizes, into single characters, so prompts
outside the grammar never fail. The files are the standard CLIP ``vocab.json`` and ``merges.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdprobe.world import vocabulary

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 16  # tokens per prompt, BOS and EOS included; the longest grammar prompt needs 10
_CHARS = [chr(c) for c in range(33, 127)]  # printable ASCII; CLIP's byte encoder maps these to themselves


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Split ``word`` the way CLIP's BPE does with the merge ``ranks`` (lowest rank merges first)."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), len(ranks) + 1), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
    return parts


def build_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """Vocabulary and merge rules that turn each of ``words`` into one token and anything else into characters."""
    tokens: list[str] = []
    seen: set[str] = set()

    def add(tok: str) -> None:
        if tok not in seen:
            seen.add(tok)
            tokens.append(tok)

    for c in _CHARS:
        add(c)
        add(c + "</w>")
    ranks: dict[tuple[str, str], int] = {}
    changed = True
    while changed:  # a new merge can re-split a word handled earlier, so repeat until every word is one token
        changed = False
        for word in words:
            parts = _bpe(word, ranks)
            if len(parts) > 1:
                ranks[(parts[0], parts[1])] = len(ranks)
                add(parts[0] + parts[1])
                changed = True
    merges = [f"{a} {b}" for (a, b), _ in sorted(ranks.items(), key=lambda kv: kv[1])]
    add(BOS)
    add(EOS)
    return {t: i for i, t in enumerate(tokens)}, merges


def save_tokenizer(directory: Path) -> int:
    """Write the tokenizer files into ``directory``; returns the vocabulary size."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(vocabulary())
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return len(vocab)
