from __future__ import annotations

import itertools

import pytest
import torch

from nlu.crf import CRF


def _brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Best path, its score and log Z by enumerating every tag path of one sequence."""
    n_tags = emissions.size(-1)
    scores = {}
    for path in itertools.product(range(n_tags), repeat=length):
        tags = torch.tensor([list(path) + [0] * (emissions.size(1) - length)])
        mask = torch.tensor([[True] * length + [False] * (emissions.size(1) - length)])
        scores[path] = crf.score(emissions, tags, mask)[0]
    best = max(scores, key=lambda p: float(scores[p]))
    return list(best), scores[best], torch.logsumexp(torch.stack(list(scores.values())), 0)


def _manual_score(crf: CRF, emissions: torch.Tensor, path: list[int]) -> float:
    s = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[0, i, t] for i, t in enumerate(path))
    return float(s + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path)))


@torch.no_grad()
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lengths", [[4, 4], [4, 2, 1, 3]])
def test_viterbi_and_partition_match_brute_force(seed: int, lengths: list[int]) -> None:
    torch.manual_seed(seed)
    n_tags, max_len = 3, max(lengths)
    crf = CRF(n_tags)
    with torch.no_grad():
        for p in (crf.transitions, crf.start, crf.end):
            p.normal_(0, 1.0)
    emissions = torch.randn(len(lengths), max_len, n_tags) * 2
    mask = torch.tensor([[i < n for i in range(max_len)] for n in lengths])
    paths = crf.decode(emissions, mask)
    log_z = crf.log_partition(emissions, mask)
    for b, n in enumerate(lengths):
        best, best_score, brute_log_z = _brute_force(crf, emissions[b : b + 1], n)
        assert paths[b] == best
        assert len(paths[b]) == n
        assert float(log_z[b]) == pytest.approx(float(brute_log_z), abs=1e-4)
        assert _manual_score(crf, emissions[b : b + 1], best) == pytest.approx(float(best_score), abs=1e-4)


def test_likelihood_is_a_distribution() -> None:
    """exp(log p(path)) summed over every path of length 3 is 1; the gradient flows to all parameters."""
    torch.manual_seed(3)
    crf = CRF(3)
    emissions = torch.randn(1, 3, 3, requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    total = sum(
        crf.log_likelihood(emissions, torch.tensor([list(p)]), mask).exp()
        for p in itertools.product(range(3), repeat=3)
    )
    assert float(total.detach()) == pytest.approx(1.0, abs=1e-5)
    crf.log_likelihood(emissions, torch.tensor([[0, 1, 2]]), mask).sum().backward()
    assert emissions.grad is not None and crf.transitions.grad is not None
    assert float(crf.transitions.grad.abs().sum()) > 0


def test_bio_constraints_are_respected() -> None:
    tags = ["O", "B-a", "I-a", "B-b", "I-b"]
    crf = CRF(len(tags))
    crf.set_bio_constraints(tags)
    torch.manual_seed(0)
    emissions = torch.randn(64, 6, len(tags)) * 3
    emissions[:, :, 4] += 2  # make the invalid I-b tempting
    for path in crf.decode(emissions, torch.ones(64, 6, dtype=torch.bool)):
        names = [tags[i] for i in path]
        for prev, cur in zip(["O"] + names, names):
            if cur.startswith("I-"):
                assert prev in ("B-" + cur[2:], cur), names
    # a forbidden path has (almost) zero probability
    ll = crf.log_likelihood(emissions[:1, :2], torch.tensor([[0, 2]]), torch.ones(1, 2, dtype=torch.bool))
    assert float(ll.detach()) < -1000
