"""The embedded generator's architecture: a tiny GPT-2 built from scratch, and its prompt format."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

PROMPT_ARROW = "=>"


def build_prompt(act_name: str, slots: Iterable[str], language: str) -> str:
    """SC-GPT style act prompt: ``<en> utter_order_status ( eta order_id status ) =>``.

    ``slots`` are the placeholder names the reply must carry; they are written sorted so that the prompt
    does not depend on dict order.
    """
    return f"<{language}> {act_name} ( {' '.join(sorted(slots))} ) {PROMPT_ARROW}"


@dataclass
class GeneratorConfig:
    """Size and training hyper-parameters of the embedded generator."""

    n_layer: int = 3
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
