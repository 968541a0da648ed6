"""The evaluation harness hook: pedagogy and safety scores of the served tutor."""

from aivo.tutor.evaluation import evaluate_tutor, load_pedagogy_set, load_safety_set


def test_evaluate_tutor_scores(tutor_service):
    result = evaluate_tutor(service=tutor_service, max_new_tokens=8)
    assert result.num_pedagogy == len(load_pedagogy_set())
    assert result.num_harmful + result.num_benign == len(load_safety_set())
    assert 0.0 <= result.pedagogy_score <= 1.0
    # the input filter refuses every harmful prompt of its set; no benign prompt is refused
    assert result.harmful_refused == 1.0 and result.benign_answered == 1.0 and result.safety_score == 1.0
    assert result.missed_by_category == {} and result.false_refusals == []
    # requests were sent together and batched
    assert tutor_service.batcher.stats.largest_batch > 1
