"""The embedded generator's architecture: a tiny GPT-2 built from scratch, its prompt format, and the
``generator.json`` that makes a saved folder self-describing.

A generator folder holds the transformers files (``config.json``, ``model.safetensors``,
``tokenizer.json``) plus ``generator.json``: the format version, the tokenizer kind and the
:class:`GeneratorConfig` it was trained with, so that it can be rebuilt or retrained the same way. A folder
written by an older Kefu (character-level tokenizer, no ``generator.json``) loads as a model but was
trained for another tokenisation and prompt set-up: :func:`check_generator` rejects it with a
:class:`~runtime.errors.ModelLoadError` that says to retrain, which is what ``kefu train`` does on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from runtime.errors import ModelLoadError

PROMPT_ARROW = "=>"
GENERATOR_FILE = "generator.json"
#: 1: character-level tokenizer, no generator.json (before sub-words); 2: BPE sub-words
GENERATOR_FORMAT = 2


def build_prompt(act_name: str, slots: Iterable[str], language: str) -> str:
    """SC-GPT style act prompt: ``<en> utter_order_status ( eta order_id status ) =>``.

    ``slots`` are the placeholder names the reply must carry; they are written sorted so that the prompt
    does not depend on dict order.
    """
    return f"<{language}> {act_name} ( {' '.join(sorted(slots))} ) {PROMPT_ARROW}"


@dataclass
class GeneratorConfig:
    """Size and training hyper-parameters of the embedded generator."""

    n_layer: int = 2  # a third layer scored no better on held-out variants (README) and slows every decode step
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    dropout: float = 0.0
    steps: int = 400
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    seed: int = 0
    threads: int = 1  # torch intra-op threads while training; the matrices are too small to gain from more
    vocab_size: int = 2000  # BPE vocabulary cap (runtime.tokenizer); merging stops earlier when no pair recurs
    bpe_min_frequency: int = 2  # a symbol pair must occur this often in the bot's texts to be merged

    def to_gpt2_config(self, vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int) -> Any:
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """The inverse of :meth:`to_dict`; unknown keys (from a newer version) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def write_generator_meta(out_dir: str | Path, config: GeneratorConfig, tokenizer_kind: str) -> None:
    """Write ``generator.json`` next to the transformers files (see the module docstring)."""
    meta = {"format": GENERATOR_FORMAT, "tokenizer": tokenizer_kind, "config": config.to_dict()}
    (Path(out_dir) / GENERATOR_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def check_generator(model_dir: str | Path) -> GeneratorConfig:
    """The config of the embedded generator saved in ``model_dir``; raises ``ModelLoadError`` when the folder
    is not one, or was written by another version (the message says how to retrain)."""
    from runtime.tokenizer import TOKENIZER_KIND

    path = Path(model_dir)
    retrain = (
        f"retrain it (`kefu train --bot <bot folder>` does, or `kefu runtime train --domain <domain.yml> --out {path}`)"
    )
    meta_file = path / GENERATOR_FILE
    if not meta_file.is_file():
        if (path / "config.json").is_file():
            raise ModelLoadError(
                str(path),
                f"an embedded generator saved by an older Kefu (character-level, no {GENERATOR_FILE}); " + retrain,
            )
        raise ModelLoadError(str(path), f"no embedded generator here (no {GENERATOR_FILE})")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        version, kind, config = meta["format"], meta["tokenizer"], GeneratorConfig.from_dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(str(path), f"unreadable {GENERATOR_FILE}: {type(exc).__name__}: {exc}") from exc
    if version != GENERATOR_FORMAT or kind != TOKENIZER_KIND:
        raise ModelLoadError(
            str(path),
            f"generator format {version} ({kind}), this Kefu reads format {GENERATOR_FORMAT} ({TOKENIZER_KIND}); "
            + retrain,
        )
    return config


def build_model(config: GeneratorConfig, tokenizer: Any) -> Any:
    """A freshly initialised ``GPT2LMHeadModel`` for ``tokenizer`` (seeded by ``config.seed``)."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(config.seed)
    gcfg = config.to_gpt2_config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(gcfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model
