"""Pretrained Chinese word vectors as a sentence encoder: what the bundled MiniLM cannot do for Chinese.

MiniLM (:mod:`nlu.encoder`) was trained on English. It reads Chinese as isolated characters and gives every pair of
Chinese sentences a cosine of 0.7-0.9, so Chinese retrieval had only the characters two texts share: "送到了再给钱行不行"
(pay when it arrives) shares none with 货到付款 (cash on delivery) and scored the payment-failure entry, and "你们一般发啥快递"
(which courier) scored the double-charge one. Word vectors know that 给钱 is near 付款 and 快递 near 物流.

The vectors are the 125,796 word2vec vectors (100 dimensions, trained on Chinese Wikipedia) that the PyPI package
``synonyms`` bundles in its 3.10 releases (``synonyms/data/words.vector``, MIT licence; later releases download them
at run time, so the 3.10 line is required). The package is never imported (its import loads and prints); only its
data files are read, offline. Words are cut by ``jieba``; a Chinese word without a vector is read as its longest
pieces that have one (jieba keeps 国际漫游 whole; the vectors know 国际 and 漫游), a Latin word without one is dropped
("refund" is not its letters). A sentence is the SIF-weighted mean of its words' unit vectors (Arora et al., 2017: weight ``a / (a + p(w))``
with ``p`` the word's frequency in the package's ``vocab.txt``), L2-normalised: frequent words (的, 了, 吗) weigh
little, topic words most. A text with no known word is the zero vector (cosine 0 with everything).

The paper's second step, removing the direction every sentence vector shares, is not applied here: the NLU's features
are these vectors as they are. :meth:`WordVectorEncoder.common_directions` gives those directions to a caller that
compares sentences by cosine (the knowledge base, :mod:`dialogue.knowledge`, "Common directions"). They are the top
eigenvectors of the vocabulary's expected SIF outer product, ``sum_w p(w) (a / (a + p(w)))^2 v_w v_w^T``, so they
depend on the vectors alone, not on which texts a caller happened to encode.

Loading reads 50 MB once per process (about 2 s), on the first :meth:`WordVectorEncoder.encode`.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlu.encoder import EncoderError, process_wide
from nlu.tokenize import simplified

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

# in every cache key of vectors made by this encoder: change it with anything that changes a text's vector
WORDVEC_NAME = ("synonyms-3.10 words.vector (word2vec zh 100d), jieba words or their longest pieces, SIF, "
                "traditional read as simplified")
WORDVEC_DIM = 100
SIF_A = 1e-3  # the SIF smoothing constant of the paper
_SKIP = re.compile(r"^[\W_]+$")  # punctuation, spaces and emoji carry no word
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class WordVectorEncoder:
    """Chinese (or mixed) sentences to unit vectors of :data:`WORDVEC_DIM`; the interface of
    :class:`nlu.encoder.SentenceEncoder` (``name``, ``dim``, ``encode``). Thread-safe; loaded on the first encode."""

    name = WORDVEC_NAME
    dim = WORDVEC_DIM

    def __init__(self, data_dir: Path | None = None) -> None:
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._index: dict[str, int] | None = None
        self._vectors: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        self._frequencies: np.ndarray | None = None
        self._common: np.ndarray | None = None
        self._cut: Any = None
        self.texts_encoded = 0

    def __repr__(self) -> str:
        return f"WordVectorEncoder(loaded={self.loaded})"

    @property
    def loaded(self) -> bool:
        """Whether the vectors have been read (they are, on the first :meth:`encode`)."""
        return self._index is not None

    @staticmethod
    def default_data_dir() -> Path:
        spec = importlib.util.find_spec("synonyms")  # located, not imported: importing it loads and prints
        if spec is None or not spec.submodule_search_locations:
            raise EncoderError("the package synonyms (3.10.x, which bundles the Chinese word vectors) is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / "data"

    def _load(self) -> None:
        with self._lock:
            if self._index is not None:
                return
            import jieba
            import numpy as np

            data = self._data_dir or self.default_data_dir()
            words, vectors = read_word2vec(data / "words.vector")
            if vectors.shape[1] != WORDVEC_DIM:
                raise EncoderError(f"expected {WORDVEC_DIM}-dimensional word vectors, found {vectors.shape[1]}",
                                   path=str(data / "words.vector"))
            index = {w: i for i, w in enumerate(words)}
            counts = np.ones(len(words), dtype=np.float64)  # a word the vocabulary does not count was seen once
            try:
                with (data / "vocab.txt").open(encoding="utf-8") as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 2 and parts[0] in index and parts[1].isdigit():
                            counts[index[parts[0]]] = max(1.0, float(parts[1]))
            except OSError as exc:
                raise EncoderError(f"cannot read the word frequencies {data / 'vocab.txt'}: {type(exc).__name__}",
                                   path=str(data / "vocab.txt")) from None
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary build to stderr at DEBUG
            tokenizer = jieba.Tokenizer()
            self._vectors = (vectors / np.maximum(norms, 1e-9)).astype(np.float32)
            self._frequencies = counts / counts.sum()
            self._weights = (SIF_A / (SIF_A + self._frequencies)).astype(np.float32)
            self._cut = tokenizer.lcut
            self._index = index
            log.info("loaded %d Chinese word vectors from %s", len(words), data)

    def words(self, text: str) -> list[str]:
        """The words of ``text`` that have a vector: jieba's words, or the pieces of a Chinese word without one."""
        self._load()
        assert self._index is not None
        index, out = self._index, []
        for word in self._cut(simplified(unicodedata.normalize("NFKC", text)).lower()):
            word = word.strip()
            if not word or _SKIP.match(word):
                continue
            if word in index:
                out.append(word)
            elif _CJK.match(word):  # "refund" has no vector and no Chinese pieces: dropped
                out.extend(self._pieces(word))
        return out

    def _pieces(self, word: str) -> list[str]:
        """A Chinese word without a vector as its longest pieces that have one, left to right (国际漫游: 国际, 漫游),
        a character without one skipped."""
        assert self._index is not None
        pieces, start = [], 0
        while start < len(word):
            end = next((e for e in range(len(word), start, -1) if word[start:e] in self._index), None)
            if end is None:
                start += 1
                continue
            pieces.append(word[start:end])
            start = end
        return pieces

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), 100) float32 tensor: unit vectors, or zeros for a text with no known word."""
        import numpy as np
        import torch

        self._load()
        assert self._index is not None and self._vectors is not None and self._weights is not None
        out = np.zeros((len(texts), WORDVEC_DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = [self._index[w] for w in self.words(text)]
            if ids:
                v = (self._weights[ids, None] * self._vectors[ids]).sum(axis=0)
                out[row] = v / max(float(np.linalg.norm(v)), 1e-9)
        self.texts_encoded += len(texts)
        return torch.from_numpy(out)

    def common_directions(self, k: int) -> np.ndarray:
        """(k, 100): the ``k`` unit directions that SIF sentence vectors share most, strongest first (see the module
        docstring); a caller projects them out of the vectors it compares. Computed once, on first use."""
        import numpy as np

        self._load()
        assert self._vectors is not None and self._weights is not None and self._frequencies is not None
        with self._lock:
            if self._common is None:
                vectors = self._vectors.astype(np.float64)
                weight = self._frequencies * self._weights.astype(np.float64) ** 2
                _, eigenvectors = np.linalg.eigh((vectors * weight[:, None]).T @ vectors)  # ascending eigenvalues
                self._common = eigenvectors[:, ::-1].T.astype(np.float32)
        return self._common[:k].copy()


def read_word2vec(path: Path) -> tuple[list[str], np.ndarray]:
    """Words and vectors of a word2vec binary file (``"<count> <dim>\\n"``, then per word its UTF-8 bytes, a space
    and ``dim`` little-endian float32). Raises :class:`EncoderError` for a missing, truncated or foreign file."""
    import numpy as np

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncoderError(f"cannot read the word vectors {path}: {type(exc).__name__}", path=str(path)) from None
    try:
        end = data.index(b"\n")
        count, dim = (int(x) for x in data[:end].split())
        words: list[str] = []
        vectors = np.empty((count, dim), dtype=np.float32)
        pos, width = end + 1, 4 * dim
        for row in range(count):
            space = data.index(b" ", pos)
            words.append(data[pos:space].decode("utf-8", "replace").lstrip("\n"))
            chunk = data[space + 1:space + 1 + width]
            if len(chunk) != width:
                raise ValueError("truncated")
            vectors[row] = np.frombuffer(chunk, dtype="<f4")
            pos = space + 1 + width
    except ValueError as exc:
        raise EncoderError(f"{path} is not a word2vec binary file ({exc}): reinstall synonyms 3.10.x",
                           path=str(path)) from None
    return words, vectors


shared_word_vectors = process_wide(WordVectorEncoder)  # the vectors take 50 MB
