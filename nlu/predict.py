"""Inference: ``NLUModel.load(dir).parse(text) -> Parse``.

A model directory holds ``config.json`` (NLUConfig + temperature + version), ``vocab.json`` and ``model.safetensors``;
the network is rebuilt from the stored config and its weights loaded (no pickle). An ensemble (``train --ensemble K``)
is the same three files: ``config.json`` says ``"members": K`` and the weights are keyed ``members.<k>.<name>``.
A model with an n-gram sentence prior (nlu.prior) also has ``prior.safetensors``; ``config.json`` holds its weight.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

import torch

from nlu.encoder import shared_encoder
from nlu.errors import ModelLoadError
from nlu.model import Ensemble, JointBiLSTMCRF, NLUConfig, Vocab, encode
from nlu.patterns import Pattern
from nlu.pretrained import load_table
from nlu.prior import NgramPrior
from nlu.sentence import SentenceHead
from nlu.tokenize import Token, detect_language, is_placeholder, simplified, tokenize
from nlu.types import Entity, Parse
from nlu.wordvec import shared_word_vectors

FORMAT_VERSION = 1
PRIOR_FILE = "prior.safetensors"  # the optional n-gram sentence prior (config.json says its weight)
SENTENCE_FILE = "sentence.safetensors"  # the optional sentence head (nlu.sentence; config.json says its weight)
TOP_K = 5
OOS_LABELS = frozenset({"oos", "out_of_scope"})


def spans_from_bio(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(label, first, last) token spans from BIO tags; a stray ``I-x`` starts a new span (conlleval convention)."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag == "O":
            continue
        prefix, label = tag[:2], tag[2:]
        if prefix == "I-" and spans and spans[-1][0] == label and spans[-1][2] == i - 1:
            spans[-1] = (label, spans[-1][1], i)
        else:
            spans.append((label, i, i))
    return spans


class NLUModel:
    """A trained joint intent/slot model with its vocabulary, calibration temperature and out-of-scope threshold.

    When the intents include an out-of-scope label (``oos`` / ``out_of_scope``), a parse whose best in-scope
    probability is below ``oos_threshold`` (chosen on dev at training time) is answered with that label."""

    def __init__(self, net: JointBiLSTMCRF | Ensemble, vocab: Vocab, temperature: float = 1.0,
                 oos_threshold: float = 0.0, prior: NgramPrior | None = None, prior_weight: float = 0.0,
                 sentence: SentenceHead | None = None, sentence_weight: float = 0.0) -> None:
        self.net = net.eval()
        self.vocab = vocab
        self.temperature = float(temperature)
        self.oos_threshold = float(oos_threshold)
        self.prior = prior  # the n-gram sentence prior (nlu.prior), its logits added with weight prior_weight
        self.prior_weight = float(prior_weight)
        self.sentence = sentence  # the sentence head (nlu.sentence), its log-probabilities added with sentence_weight
        self.sentence_weight = float(sentence_weight)

    def __repr__(self) -> str:
        return (f"NLUModel(intents={len(self.vocab.intents)}, tags={len(self.vocab.tags)}, T={self.temperature:.3f}, "
                f"oos_threshold={self.oos_threshold:.3f})")

    @property
    def oos_label(self) -> str | None:
        """The out-of-scope intent of this model's label set, if it has one."""
        return next((i for i in self.vocab.intents if i in OOS_LABELS), None)

    def decide(self, probs: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """Intent ids from calibrated probabilities ``[N, n_intents]``: the argmax, except that an in-scope argmax
        whose probability is below the out-of-scope threshold becomes the out-of-scope intent."""
        pred = probs.argmax(-1) if len(probs) else torch.zeros(0, dtype=torch.long)
        t = self.oos_threshold if threshold is None else threshold
        oos = self.oos_label
        if oos is None or t <= 0 or not len(probs):
            return pred
        top = probs.gather(1, pred.unsqueeze(1)).squeeze(1)
        return torch.where(top < t, torch.full_like(pred, self.vocab.intent_id[oos]), pred)

    @property
    def config(self) -> NLUConfig:
        return self.net.config

    @property
    def members(self) -> int:
        """How many networks this model averages (1 unless trained with ``--ensemble``)."""
        return len(self.net.members) if isinstance(self.net, Ensemble) else 1

    # ---------------------------------------------------------------- persistence
    def save(self, out_dir: str | Path) -> None:
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta: dict[str, object] = {"version": FORMAT_VERSION, "config": asdict(self.config),
                                   "temperature": self.temperature, "oos_threshold": self.oos_threshold}
        if self.members > 1:
            meta["members"] = self.members
        if self.prior is not None and self.prior_weight:
            meta["prior_weight"] = self.prior_weight
            tensors = {"weight": self.prior.weight.contiguous(), "bias": self.prior.bias.contiguous()}
            if self.prior.dense is not None:
                tensors["dense"] = self.prior.dense.contiguous()
            if self.prior.words is not None:
                tensors["words"] = self.prior.words.contiguous()
            save_file(tensors, str(out / PRIOR_FILE), metadata={"format": "kefu-nlu-prior", "version": str(FORMAT_VERSION)})
        elif (out / PRIOR_FILE).exists():
            (out / PRIOR_FILE).unlink()  # a model without a prior saved over one that had it
        if self.sentence is not None and self.sentence_weight:
            meta["sentence_weight"] = self.sentence_weight
            save_file({"weight": self.sentence.weight, "bias": self.sentence.bias}, str(out / SENTENCE_FILE),
                      metadata={"format": "kefu-nlu-sentence", "version": str(FORMAT_VERSION)})
        elif (out / SENTENCE_FILE).exists():
            (out / SENTENCE_FILE).unlink()
        (out / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (out / "vocab.json").write_text(json.dumps(self.vocab.to_dict(), ensure_ascii=False), encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        save_file(state, str(out / "model.safetensors"),
                  metadata={"format": "kefu-nlu", "version": str(FORMAT_VERSION)})

    @classmethod
    def load(cls, model_dir: str | Path) -> NLUModel:
        """Rebuild the network from ``config.json`` and load its weights; raises ``ModelLoadError`` naming the file."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(model_dir)
        if not d.is_dir():
            raise ModelLoadError(d, "model directory does not exist")
        meta = _read_json(d / "config.json")
        if meta.get("version") != FORMAT_VERSION:
            raise ModelLoadError(d / "config.json", f"unsupported format version {meta.get('version')!r}")
        try:
            known = {f.name for f in fields(NLUConfig)}
            raw_config = dict(meta["config"])
            raw_config.setdefault("pretrained", "")  # checkpoints from before pretrained features had none
            config = NLUConfig(**{k: v for k, v in raw_config.items() if k in known})
            temperature = float(meta["temperature"])
            oos_threshold = float(meta.get("oos_threshold", 0.0))
            members = int(meta.get("members", 1))
            if members < 1:
                raise ValueError(f"members must be >= 1, got {members}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(d / "config.json", f"bad config: {exc!r}") from None
        raw = _read_json(d / "vocab.json")
        try:
            vocab = Vocab(words=list(raw["words"]), chars=list(raw["chars"]), tags=list(raw["tags"]),
                          intents=list(raw["intents"]), synonyms=dict(raw.get("synonyms", {})),
                          pretrained=str(raw.get("pretrained", "")),
                          patterns=[Pattern.from_dict(p) for p in raw.get("patterns", [])],
                          bigrams=list(raw.get("bigrams", [])))
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise ModelLoadError(d / "vocab.json", f"missing or bad table: {exc!r}") from None
        if vocab.pretrained != config.pretrained:
            raise ModelLoadError(d / "vocab.json", "pretrained source does not match config.json")
        sizes = (len(vocab.words), len(vocab.chars), len(vocab.tags), len(vocab.intents), len(vocab.patterns),
                 len(vocab.bigrams))
        if sizes != (config.n_words, config.n_chars, config.n_tags, config.n_intents, config.n_patterns,
                     config.n_bigrams):
            raise ModelLoadError(d / "vocab.json", "vocabulary sizes do not match config.json")
        weights = d / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(weights, "file not found")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(weights, f"unreadable safetensors file: {exc}") from None
        try:
            nets = [JointBiLSTMCRF(config) for _ in range(members)]
        except ValueError as exc:
            raise ModelLoadError(d / "config.json", str(exc)) from None
        net: JointBiLSTMCRF | Ensemble = nets[0] if members == 1 else Ensemble(nets)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(weights, f"weights do not fit the config: {str(exc).splitlines()[0]}") from None
        prior = None
        prior_weight = float(meta.get("prior_weight", 0.0))
        if prior_weight:
            try:
                raw_prior = load_file(str(d / PRIOR_FILE))
                dense = raw_prior.get("dense")
                table = load_table(vocab.pretrained) if dense is not None else None
                words = raw_prior.get("words")
                prior = NgramPrior(raw_prior["weight"], raw_prior["bias"], dense, table, words,
                                   shared_word_vectors() if words is not None else None)
            except (SafetensorError, OSError, ValueError, KeyError) as exc:
                raise ModelLoadError(d / PRIOR_FILE, f"missing or unreadable n-gram prior: {exc!r}") from None
            if prior.weight.size(1) != len(vocab.intents) or prior.bias.shape != (len(vocab.intents),):
                raise ModelLoadError(d / PRIOR_FILE, "n-gram prior does not fit the intents")
        sentence = None
        sentence_weight = float(meta.get("sentence_weight", 0.0))
        if sentence_weight:
            try:
                raw_head = load_file(str(d / SENTENCE_FILE))
                sentence = SentenceHead(raw_head["weight"], raw_head["bias"])
            except (SafetensorError, OSError, ValueError, KeyError) as exc:
                raise ModelLoadError(d / SENTENCE_FILE, f"missing or unreadable sentence head: {exc!r}") from None
            if sentence.n_intents != len(vocab.intents) or sentence.weight.size(1) != len(vocab.intents):
                raise ModelLoadError(d / SENTENCE_FILE, "sentence head does not fit the intents")
        return cls(net, vocab, temperature, oos_threshold, prior, prior_weight, sentence, sentence_weight)

    # ---------------------------------------------------------------- prediction
    def predict_tokens(self, token_lists: Sequence[Sequence[str]], batch_size: int = 128,
                       texts: Sequence[str] | None = None) -> tuple[torch.Tensor, list[list[str]]]:
        """Calibrated intent probabilities ``[N, n_intents]`` and BIO tags for pre-tokenised utterances (``texts``, the
        utterances themselves, only matter to a model with regex features)."""
        probs: list[torch.Tensor] = []
        tags: list[list[str]] = []
        order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))  # similar lengths together
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            logits, paths = self.net.predict(encode(self.vocab, [token_lists[i] for i in idx],
                                                    [texts[i] for i in idx] if texts is not None else None))
            if self.prior is not None and self.prior_weight:
                logits = logits + self.prior_weight * self.prior.logits([token_lists[i] for i in idx])
            if self.sentence is not None and self.sentence_weight:
                whole = [texts[i] if texts is not None else " ".join(token_lists[i]) for i in idx]
                logits = logits + self.sentence_weight * self.sentence.logits(shared_encoder().encode(whole))
            probs.append(torch.softmax(logits / self.temperature, dim=-1))
            tags.extend([self.vocab.tags[t] for t in p[: len(token_lists[i])]] for p, i in zip(paths, idx))
        if not order:
            return torch.zeros(0, len(self.vocab.intents)), []
        p = torch.cat(probs)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        out_tags: list[list[str]] = [[] for _ in order]
        for pos, i in enumerate(order):
            out_tags[i] = tags[pos]
        return p[inverse], out_tags

    def warm(self) -> None:
        """Load now what parsing loads on first use (the prior's Chinese word vectors, the sentence head's encoder: a
        few seconds), so that no customer's message waits for it. Blocking."""
        if self.prior is not None and self.prior.vectors is not None:
            self.prior.vectors.encode([""])
        if self.sentence is not None:
            shared_encoder().encode([""])

    def parse_batch(self, texts: Sequence[str], batch_size: int = 128) -> list[Parse]:
        plain = [simplified(t) for t in texts]  # as long as the text: offsets into it are the text's
        token_lists: list[list[Token]] = [tokenize(p) for p in plain]
        probs, tags = self.predict_tokens([[t.text for t in toks] for toks in token_lists], batch_size, texts)
        k = min(TOP_K, len(self.vocab.intents))
        top_p, top_i = probs.topk(k, dim=-1)
        decided = self.decide(probs).tolist()
        synonyms = self.vocab.synonyms  # looked up by the bot's own spelling first, then by the plain one
        out = []
        for text, read, toks, tg, ps, ids, d in zip(texts, plain, token_lists, tags, top_p.tolist(), top_i.tolist(),
                                                     decided):
            ranking = tuple((self.vocab.intents[i], float(p)) for i, p in zip(ids, ps))
            if d != ids[0]:  # out of scope by threshold: confidence = 1 - best in-scope probability
                oos = self.vocab.intents[d]
                ranking = ((oos, 1.0 - ps[0]),) + tuple(r for r in ranking if r[0] != oos)[: k - 1]
            entities = []
            for label, a, b in spans_from_bio(tg):
                while a <= b and is_placeholder(toks[a].text):  # a redaction is never (part of) a slot value
                    a += 1
                while b >= a and is_placeholder(toks[b].text):
                    b -= 1
                if a > b:
                    continue
                start, end = toks[a].start, toks[b].end
                span = text[start:end]
                canonical = synonyms.get(span.lower()) or synonyms.get(read[start:end].lower(), span)
                entities.append(Entity(label, canonical, start, end))
            out.append(Parse(text=text, intent=ranking[0][0], confidence=ranking[0][1], entities=tuple(entities),
                             ranking=ranking, language=detect_language(text)))
        return out

    def parse(self, text: str) -> Parse:
        return self.parse_batch([text])[0]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelLoadError(path, "file not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(path, f"unreadable JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ModelLoadError(path, "expected a JSON object")
    return obj
