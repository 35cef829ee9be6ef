"""The linear-chain CRF: constrained Viterbi and the NLL against brute force over every path of tiny cases, and
no invalid IOB2 sequence ever decoded (hypothesis)."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.errors import ConfigError
from zoo.inference.crf import FORBIDDEN, bio_constraints, is_valid_bio, join_windows, viterbi
from zoo.tasks.text.crf import LinearChainCRF, compact

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _random_crf(seed: int, tags=TAGS, constrained=True) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(tags, constrained=constrained)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def _path_score(em, path, trans, start, end):
    s = start[path[0]] + em[0, path[0]]
    for t in range(1, len(path)):
        s = s + trans[path[t - 1], path[t]] + em[t, path[t]]
    return s + end[path[-1]]


def test_bio_constraints_forbid_i_without_its_b():
    allowed, start = bio_constraints(TAGS)
    assert not start[2] and not start[4] and start[0] and start[1]
    assert allowed[1, 2] and allowed[2, 2] and not allowed[0, 2] and not allowed[3, 2] and not allowed[4, 2]
    assert allowed[0, 1] and allowed[4, 0]
    assert is_valid_bio(["B-PER", "I-PER", "O", "B-LOC"]) and not is_valid_bio(["O", "I-LOC"])
    assert not is_valid_bio(["B-PER", "I-LOC"]) and not is_valid_bio(["I-PER"])


@pytest.mark.parametrize("seed", range(4))
def test_viterbi_equals_brute_force_and_nll_the_log_partition(seed):
    crf = _random_crf(seed)
    lengths = [4, 2, 1]
    em = torch.randn(len(lengths), max(lengths), len(TAGS))
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    paths = crf.decode(em, mask)
    trans, start, end = crf.scores()
    for b, n in enumerate(lengths):
        scored = {p: float(_path_score(em[b], p, trans, start, end))
                  for p in itertools.product(range(len(TAGS)), repeat=n)}
        best = max(scored, key=scored.get)
        assert tuple(paths[b]) == best
        assert is_valid_bio([TAGS[k] for k in paths[b]])
        # the NLL of any gold path is log Z - its score, log Z over every path (forbidden ones weigh ~0)
        gold = torch.tensor(list(best) + [0] * (max(lengths) - n))[None]
        log_z = torch.logsumexp(torch.tensor(list(scored.values())), 0)
        nll = crf.nll(em[b:b + 1], gold, mask[b:b + 1])
        assert math.isclose(float(nll), float(log_z) - scored[best], rel_tol=1e-5, abs_tol=1e-4)


def test_unconstrained_crf_nll_equals_brute_force():
    crf = _random_crf(7, tags=["A", "B", "C"], constrained=False)
    em = torch.randn(1, 3, 3)
    mask = torch.ones(1, 3, dtype=torch.bool)
    trans, start, end = crf.scores()
    log_z = torch.logsumexp(torch.stack([_path_score(em[0], p, trans, start, end)
                                         for p in itertools.product(range(3), repeat=3)]), 0)
    gold = torch.tensor([[2, 0, 1]])
    expected = log_z - _path_score(em[0], (2, 0, 1), trans, start, end)
    assert torch.allclose(crf.nll(em, gold, mask), expected, atol=1e-5)


def test_nll_is_differentiable_and_forbidden_moves_stay_fixed():
    crf = LinearChainCRF(TAGS)
    em = torch.randn(2, 3, len(TAGS), requires_grad=True)
    loss = crf.nll(em, torch.tensor([[1, 2, 0], [0, 3, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    loss.backward()
    assert em.grad is not None and crf.transitions.grad is not None
    assert crf.transitions.grad[~crf.allowed].abs().sum() == 0  # masked: no gradient reaches forbidden moves
    trans, start, _ = crf.scores()
    assert float(trans[0, 2]) == FORBIDDEN and float(start[4]) == FORBIDDEN


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 7), st.integers(0, 2**16), st.floats(1.0, 50.0))
def test_decoding_never_emits_an_invalid_bio_sequence(length, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    crf = LinearChainCRF(TAGS)
    # emissions that shout for I- tags where they are forbidden: the constraints must still win
    em = torch.randn(2, length, len(TAGS), generator=gen) * scale
    em[..., 2] += scale
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, max(1, length // 2):] = False
    for b, path in enumerate(crf.decode(em, mask)):
        assert len(path) == int(mask[b].sum())
        assert is_valid_bio([TAGS[k] for k in path])


def test_viterbi_of_empty_sequences_and_compact():
    assert viterbi(torch.zeros(2, 0, 3), torch.zeros(2, 0), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3)) == [
        [], []]
    values = torch.arange(12.0).view(2, 6)
    keep = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    packed, mask = compact(values, keep)
    assert packed.tolist() == [[1.0, 3.0, 4.0], [6.0, 0.0, 0.0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_windows_joined_stay_valid_iob2():
    # window 2 opens on I-PER after window 1 ended on B-LOC: the joined text opens a PER entity instead
    assert join_windows([[1, 2, 3], [2, 2, 0]], TAGS) == [1, 2, 3, 1, 2, 0]
    assert join_windows([[1, 2], [2, 0]], TAGS) == [1, 2, 2, 0]  # a continued entity is kept


def test_crf_tagger_refuses_sub_word_data(tmp_path):
    from zoo.tasks.text.crf_tagger import CRFTagger
    from zoo.tasks.text.tiny import tiny_token_case

    _, data = tiny_token_case(tmp_path)
    with pytest.raises(ConfigError, match="tokenizer: words"):
        CRFTagger().bind_data(data)
    with pytest.raises(ConfigError, match="--model.init_args.context"):
        CRFTagger(context="gru")
