"""A small character-level tokenizer for the embedded generator, built with the ``tokenizers`` library.

Every character of the bot's texts (plus printable ASCII) is one token; placeholders ``[slot]`` and
language tags ``<en>`` are single added tokens. Saved as a ``PreTrainedTokenizerFast`` folder so that
``AutoTokenizer.from_pretrained(dir)`` loads it.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

PAD = "<pad>"
BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def lang_tag(language: str) -> str:
    return f"<{language}>"


def placeholder_token(slot: str) -> str:
    return f"[{slot}]"


def build_tokenizer(texts: Iterable[str], placeholders: Iterable[str], languages: Iterable[str]):  # type: ignore[no-untyped-def]
    """Return a ``transformers.PreTrainedTokenizerFast`` over the characters of ``texts``.

    Placeholders are added as normal (non-special) tokens so ``decode(skip_special_tokens=True)`` keeps
    them; language tags, pad, bos, eos and unk are special tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars: dict[str, None] = {}
    for c in string.printable:
        if c not in "\x0b\x0c\r":
            chars.setdefault(c, None)
    for text in texts:
        for c in text:
            chars.setdefault(c, None)
    vocab: dict[str, int] = {}
    for special in SPECIAL_TOKENS:
        vocab[special] = len(vocab)
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tags = sorted({lang_tag(lang) for lang in languages})
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tags])
    slots = sorted({placeholder_token(p) for p in placeholders})
    tok.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False) for t in slots])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=tags,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return fast


def save_tokenizer(tokenizer, out_dir: str | Path) -> None:  # type: ignore[no-untyped-def]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
