"""NLU on a small bot's data: how much the sentence head (``nlu.sentence``) helps, and at which weight.

A bot written by hand (or imported from Rasa) has a dozen examples per intent. This samples ``--intents`` in-scope
intents of clinc150 with ``--per-intent`` training examples each, trains Kefu's NLU as an imported bot is trained
(refit on train + dev, sentence head on), and measures intent accuracy on those intents' clinc150 test examples with
the head's weight set to each of ``--weights`` (0 = the BiLSTM-CRF alone). Deterministic per seed.

Usage::

    python benchmarks/nlu_small_data.py --seeds 0 1 --json results/nlu_small_data.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safety.shared_data import shared_data_dir


def run(seed: int, n_intents: int, per_intent: int, weights: list[float], data: Path) -> dict[str, Any]:
    from nlu.data import load_examples
    from nlu.train import TrainConfig, train

    rng = random.Random(seed)
    pool = [e for e in load_examples(data / "train.jsonl") if e.intent != "oos"]
    test = [e for e in load_examples(data / "test.jsonl") if e.intent != "oos"]
    intents = sorted({e.intent for e in pool})
    rng.shuffle(intents)
    chosen = set(intents[:n_intents])
    by_intent: dict[str, list[Any]] = {}
    for example in pool:
        if example.intent in chosen:
            by_intent.setdefault(example.intent, []).append(example)
    examples = [e for intent in sorted(by_intent) for e in rng.sample(by_intent[intent], per_intent)]
    test = [e for e in test if e.intent in chosen]
    with tempfile.TemporaryDirectory() as tmp:
        model = train(examples, Path(tmp), train_config=TrainConfig(
            epochs=40, patience=8, refit=True, sentence=True, sentence_weight=1.0, seed=seed, progress=False))
    accuracy = {}
    for weight in weights:
        model.sentence_weight = weight
        parses = model.parse_batch([e.text for e in test])
        accuracy[str(weight)] = round(sum(p.intent == e.intent for p, e in zip(parses, test)) / len(test), 4)
    return {"seed": seed, "intents": n_intents, "train": len(examples), "test": len(test), "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=shared_data_dir() / "clinc150")
    parser.add_argument("--intents", type=int, default=25)
    parser.add_argument("--per-intent", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        result = run(seed, args.intents, args.per_intent, args.weights, args.data)
        results.append(result)
        print(f"seed {seed}: {result['train']} training / {result['test']} test examples, accuracy by sentence "
              f"weight: {result['accuracy']}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
