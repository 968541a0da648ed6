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
