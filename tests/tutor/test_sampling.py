import torch

from aivo.tutor.options import GenerationParams
from aivo.tutor.sampling import RowController, RowSpec, apply_repetition_penalty, top_p_mask
from aivo.tutor.streams import CancelFlag


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.9, 0.03, 0.02]])
    mask = top_p_mask(probs, torch.tensor([0.7, 0.5]))
    assert mask.tolist() == [[True, True, False, False], [False, True, False, False]]
    assert top_p_mask(probs, torch.tensor([1.0, 1.0])).all()


def test_repetition_penalty_matches_the_ctrl_rule():
    scores = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(scores, torch.tensor([[0, 1]]), torch.tensor([2.0]))
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def _rows(params_list):
    return [RowSpec(params=p, generator=torch.Generator().manual_seed(p.seed), max_new_tokens=p.max_new_tokens,
                    cancelled=CancelFlag()) for p in params_list]


def test_row_choice_depends_only_on_its_own_seed():
    torch.manual_seed(0)
    logits = torch.randn(1, 50)
    ids = torch.tensor([[1, 2, 3]])
    solo = RowController(_rows([GenerationParams(temperature=1.0, seed=7)]), prompt_width=3)
    pair = RowController(_rows([GenerationParams(temperature=0.5, seed=99), GenerationParams(temperature=1.0, seed=7)]),
                         prompt_width=3)
    picks_solo = [solo(ids, logits.clone()).argmax(-1).item() for _ in range(20)]
    picks_pair = [pair(ids.repeat(2, 1), logits.repeat(2, 1)).argmax(-1)[1].item() for _ in range(20)]
    assert picks_solo == picks_pair
    assert len(set(picks_solo)) > 1  # it does sample


def test_greedy_rows_take_the_argmax_and_rows_stop_on_their_own():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 0.0]])
    flag = CancelFlag()
    rows = _rows([GenerationParams(temperature=0, max_new_tokens=2, seed=1),
                  GenerationParams(temperature=0, max_new_tokens=5, seed=2)])
    rows[1].cancelled = flag
    controller = RowController(rows, prompt_width=3)
    assert controller(torch.zeros(2, 3, dtype=torch.long), logits).argmax(-1).tolist() == [1, 0]
    stop = controller.stopping_criterion()
    assert stop(torch.zeros(2, 4, dtype=torch.long), None).tolist() == [False, False]
    assert stop(torch.zeros(2, 5, dtype=torch.long), None).tolist() == [True, False]
    flag.set()
    assert stop(torch.zeros(2, 5, dtype=torch.long), None).tolist() == [True, True]


def test_inverse_cdf_sampling_follows_the_distribution():
    from aivo.tutor.sampling import sample_from_cdf

    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5], [0.2, 0.0, 0.0, 0.0]])
    picks = sample_from_cdf(probs, torch.tensor([0.25, 0.99]))
    assert picks.tolist() == [1, 0]
    generator = torch.Generator().manual_seed(0)
    draws = sample_from_cdf(torch.tensor([[0.1, 0.2, 0.7]]).repeat(20000, 1), torch.rand(20000, generator=generator))
    freq = torch.bincount(draws, minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.015)


def test_top_p_shortcut_equals_the_full_sort():
    generator = torch.Generator().manual_seed(3)
    flat = torch.softmax(torch.randn(4, 300, generator=generator) * 0.1, dim=-1)  # nucleus > 64 tokens
    peaked = torch.softmax(torch.randn(4, 300, generator=generator) * 6, dim=-1)  # nucleus < 64 tokens
    for probs in (flat, peaked):
        top_p = torch.tensor([0.5, 0.9, 0.95, 1.0])
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = (sorted_probs.cumsum(-1) - sorted_probs) < top_p[:, None]
        keep[:, 0] = True
        expected = torch.zeros_like(keep).scatter(1, order, keep)
        assert torch.equal(top_p_mask(probs, top_p), expected)
