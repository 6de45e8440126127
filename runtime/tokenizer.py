"""The embedded generator's tokenizer: sub-words learnt by BPE on the bot's own texts (``tokenizers`` library).

Why sub-words and not characters: every generated token costs one decode step of the whole batch, and the
reply latency under load is (tokens per reply) x (step time). Merges learnt from the bot's own replies
make a frequent word one token, so a reply takes several times fewer steps than one token per character
(the README gives the demo shop's counts).

How: spaces become ``▁`` word prefixes (Metaspace, SentencePiece style) so decoding is lossless (no
guessing where spaces were), and BPE merges any pair of symbols seen at least ``min_frequency`` times in
the training texts. Chinese has no spaces, so a Chinese sentence is one pre-token whose characters BPE
merges into the frequent words (``订单``, ``退货``) and leaves single characters elsewhere. The initial
alphabet is printable ASCII plus every character of the texts, so any prompt built from act and slot
names encodes without ``<unk>``. Placeholders ``[slot]`` are whole added tokens (a reply can never carry
half a placeholder); language tags ``<en>`` and pad/bos/eos/unk are special tokens. Saved as a
``PreTrainedTokenizerFast`` folder (``tokenizer.json``): ``AutoTokenizer.from_pretrained(dir)`` rebuilds it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any

PAD = "<pad>"
BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
#: what ``generator.json`` records, so that a folder saved with another tokenizer kind is recognised
TOKENIZER_KIND = "bpe-metaspace"


def lang_tag(language: str) -> str:
    return f"<{language}>"


def placeholder_token(slot: str) -> str:
    return f"[{slot}]"


def build_tokenizer(
    texts: Iterable[str],
    placeholders: Iterable[str],
    languages: Iterable[str],
    vocab_size: int = 2000,
    min_frequency: int = 2,
) -> Any:
    """A ``transformers.PreTrainedTokenizerFast`` whose BPE merges are trained on ``texts``.

    ``vocab_size`` caps the vocabulary (a bot's replies usually run out of recurring pairs well before);
    ``min_frequency`` is how often a pair must occur to be merged: 2 keeps words seen once split into
    pieces that other words share, rather than memorised as opaque symbols.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    alphabet: dict[str, None] = {c: None for c in string.printable if c not in "\x0b\x0c\r "}  # " " is "▁"
    for text in texts:
        for c in text:
            if c != " ":
                alphabet.setdefault(c, None)
    tags = sorted({lang_tag(lang) for lang in languages})
    slots = sorted({placeholder_token(p) for p in placeholders})
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # "first": only the start of the text gets a ``▁``, not each piece between added tokens, so that
    # "订单[order_id]的状态" does not come back as "订单[order_id] 的状态"
    metaspace = pre_tokenizers.Metaspace(prepend_scheme="first")
    # the trainer does not cut out added tokens the way encoding does: drop them from its pre-tokens, or
    # it spends merges on "[order_id]" and "<en>" (the pieces around them keep their offsets, so they
    # are pre-tokenised exactly as when encoding)
    added = "|".join(re.escape(t) for t in (*SPECIAL_TOKENS, *tags, *slots))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(added), behavior="removed"), metaspace])
    tok.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *tags],
        initial_alphabet=list(alphabet),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.pre_tokenizer = metaspace
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*SPECIAL_TOKENS, *tags)])
    tok.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False) for t in slots])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=tags,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
