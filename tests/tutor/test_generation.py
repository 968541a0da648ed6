"""The tiny model end to end through the service: generation, determinism, batching,
per-learner adapters (they change outputs, stay isolated, and the cache evicts LRU)."""

from __future__ import annotations

import threading

import pytest

from aivo.errors import ConfigError, DataError, NotFoundError
from aivo.tutor.schemas import GenerateRequest, StudentContextIn

from .conftest import clone_request, make_settings, wait_for_clone


def ask(service, prompt="What is photosynthesis?", student=None, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_new_tokens", 16)
    return service.generate(GenerateRequest(prompt=prompt, context=StudentContextIn(student_id=student, grade="5"), **kw))


def test_generate_end_to_end(tutor_service):
    result = ask(tutor_service, max_new_tokens=12)
    assert result.model == tutor_service.model_name and result.adapter_used is None
    assert result.usage.completion_tokens <= 12 and result.usage.prompt_tokens > 20
    assert result.tokens_used == result.usage.total_tokens
    assert result.readability.target_grade == 5 and result.finish_reason in ("stop", "length")
    assert not result.safety.blocked and result.timestamp.tzinfo is not None
    health = tutor_service.health()
    assert health.model_loaded and health.device == "cpu" and health.is_tiny_model and health.batches >= 1


def test_same_seed_same_answer_and_seeds_matter(tutor_service):
    a = ask(tutor_service, temperature=1.0, seed=11, max_new_tokens=20).response
    b = ask(tutor_service, temperature=1.0, seed=11, max_new_tokens=20).response
    others = {ask(tutor_service, temperature=1.0, seed=s, max_new_tokens=20).response for s in (1, 2, 3)}
    assert a == b and len(others | {a}) > 1


def test_input_refusal_generates_nothing(tutor_service):
    result = ask(tutor_service, prompt="how do I make a bomb")
    assert result.safety.blocked and result.safety.stage == "input" and result.safety.category == "violence"
    assert result.finish_reason == "content_filter" and result.usage.total_tokens == 0
    assert "trusted adult" in result.response


def test_prompt_longer_than_the_context_is_a_user_error(tutor_service):
    with pytest.raises(DataError, match="reads at most"):
        ask(tutor_service, prompt="word " * 1500)


def test_missing_default_model_is_a_clear_error(aivo_home):
    from aivo.config import Settings
    from aivo.services.tutor import TutorService

    service = TutorService(settings=Settings(home=aivo_home))
    with pytest.raises(ConfigError, match="aivo tutor init") as raised:
        service.load()
    assert raised.value.http_status == 503 and raised.value.exit_code == 2  # the server lacks it: unavailable


def test_quantization_needs_gpu_and_bitsandbytes(aivo_home, tiny_model_dir):
    from aivo.tutor.engine import TutorEngine

    with pytest.raises(ConfigError, match="needs a CUDA GPU and bitsandbytes"):
        TutorEngine.load(make_settings(aivo_home, tiny_model_dir, quantization="4bit"))


def _clone(service, student, explanation, **kw):
    started = service.start_clone(clone_request(student, explanation, **kw))
    status = wait_for_clone(service, started.clone_id, timeout=120)
    assert status.status == "completed", status
    return status


def test_adapters_change_outputs_and_stay_isolated_per_learner(tutor_service):
    base = ask(tutor_service, max_new_tokens=24).response
    _clone(tutor_service, "learner-a", "Bees visit flowers. Bees carry pollen. Flowers make seeds.")
    _clone(tutor_service, "learner-b", "Rocks are hard. Rivers move rocks. Sand comes from rocks.")
    solo = {s: ask(tutor_service, student=s, max_new_tokens=24) for s in ("learner-a", "learner-b", "no-adapter")}
    assert solo["learner-a"].adapter_used == "learner-a" and solo["learner-b"].adapter_used == "learner-b"
    assert solo["no-adapter"].adapter_used is None and solo["no-adapter"].response == base
    assert len({base, solo["learner-a"].response, solo["learner-b"].response}) == 3  # adapters change outputs

    # The same requests sent together share one mixed-adapter batch; each row still gets its own
    # learner's adapter: outputs equal the solo ones.
    results, barrier = {}, threading.Barrier(6)

    def worker(key, student):
        barrier.wait()
        results[key] = ask(tutor_service, student=student, max_new_tokens=24)

    plan = {"a1": "learner-a", "b1": "learner-b", "n1": "no-adapter", "a2": "learner-a", "b2": "learner-b",
            "n2": None}
    threads = [threading.Thread(target=worker, args=item) for item in plan.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = tutor_service.batcher.stats
    assert stats.mixed_batches >= 1 and stats.largest_batch >= 3
    for key, student in plan.items():
        expected = solo[student].response if student in solo else base
        assert results[key].response == expected, key
        assert results[key].adapter_used == (student if student in ("learner-a", "learner-b") else None)


def test_chat_model_names_select_the_learner_adapter(tutor_service):
    from aivo.tutor.schemas import ChatCompletionRequest, ChatMessage

    with pytest.raises(NotFoundError, match="no tutor adapter"):
        tutor_service.chat_completion(ChatCompletionRequest(model="aivo-tutor:nobody",
                                                            messages=[ChatMessage(role="user", content="hi")]))
    with pytest.raises(NotFoundError, match="unknown model"):
        tutor_service.chat_completion(ChatCompletionRequest(model="gpt-4",
                                                            messages=[ChatMessage(role="user", content="hi")]))


def test_lru_cache_evicts_least_recently_used(tutor_service):
    for student in ("lru-a", "lru-b", "lru-c"):
        _clone(tutor_service, student, f"{student} likes numbers. Numbers help us count.", epochs=2)
    cache = tutor_service.adapter_cache  # capacity 2 in the test settings
    ask(tutor_service, student="lru-a")
    ask(tutor_service, student="lru-b")
    assert cache.cached_learners() == ["lru-a", "lru-b"]
    ask(tutor_service, student="lru-a")  # a is now the most recent
    ask(tutor_service, student="lru-c")  # evicts b
    assert cache.cached_learners() == ["lru-a", "lru-c"]
    stats = cache.stats()
    assert stats.evictions == 1 and stats.loads == 3 and stats.hits == 1 and stats.size == 2
    # adapters live in reusable PEFT slots: two slots for a cache of two, never more
    slots = [n for n in tutor_service.engine.model.peft_config if n.startswith("slot_")]
    assert len(slots) == 2 and stats.slots == 2 and stats.slots_created == 2
    # reloading b (into a slot last used by another learner) gives the same answer as before
    first_b = ask(tutor_service, student="lru-b").response
    ask(tutor_service, student="lru-a")
    ask(tutor_service, student="lru-c")
    assert ask(tutor_service, student="lru-b").response == first_b


def test_an_adapter_is_refused_for_another_learner(tutor_service):
    from aivo.errors import IntegrityError
    from aivo.tutor.adapter_store import AdapterRef

    _clone(tutor_service, "owner", "Owners own things.", epochs=1)
    ref = tutor_service.store.latest("owner")
    stolen = AdapterRef(learner_id="intruder", sha256=ref.sha256, size=ref.size,
                        base_fingerprint=ref.base_fingerprint)
    with pytest.raises(IntegrityError, match="belongs to another learner"):
        tutor_service.store.load(stolen)
    stream = tutor_service.submit_messages(messages=[{"role": "user", "content": "hi"}], adapter=stolen,
                                           params=tutor_service.params(max_new_tokens=4))
    with pytest.raises(IntegrityError):
        stream.result()
    assert "intruder" not in tutor_service.adapter_cache


def test_close_finishes_queued_work_then_refuses_more(tutor_settings):
    from aivo.services.tutor import TutorService

    service = TutorService(settings=tutor_settings)
    streams = [service.submit_messages(messages=[{"role": "user", "content": f"question {i}"}], adapter=None,
                                       params=service.params(max_new_tokens=4)) for i in range(12)]
    service.close()
    for stream in streams:  # every consumer gets a final event: nothing hangs
        _tokens, finished = stream.result()
        assert finished.completion_tokens <= 4
    with pytest.raises(RuntimeError, match="closed"):
        service.submit_messages(messages=[{"role": "user", "content": "hi"}], adapter=None,
                                params=service.params(max_new_tokens=4))


def test_two_adapter_versions_of_one_learner_in_one_batch_both_finish(tutor_service):
    """A learner re-cloned while a request waits: the batch holds two versions of one learner's
    adapter. Each is served in its own group; the worker survives and later requests work."""
    _clone(tutor_service, "twice", "Cats sleep a lot. Cats like sun.", epochs=1)
    old = tutor_service.store.latest("twice")
    _clone(tutor_service, "twice", "Dogs run fast. Dogs like parks.", epochs=2)
    new = tutor_service.store.latest("twice")
    assert old.sha256 != new.sha256
    params = tutor_service.params(max_new_tokens=4)
    streams = [tutor_service.submit_messages(messages=[{"role": "user", "content": "hi"}], adapter=ref,
                                             params=params) for ref in (old, new, old)]
    for stream in streams:
        _tokens, finished = stream.result()
        assert finished.completion_tokens <= 4
    assert ask(tutor_service, student="twice", max_new_tokens=4).adapter_used == "twice"


def test_an_adapter_of_another_base_model_is_not_used(tutor_service):
    """After AIVO_BRAIN_MODEL changes, a learner cloned on the old model gets the base model's answer
    (never their old adapter on the new model); asking for the adapter by name says why."""
    from aivo.errors import ConflictError
    from aivo.tutor.schemas import ChatCompletionRequest, ChatMessage

    base = ask(tutor_service, max_new_tokens=12).response
    _clone(tutor_service, "switched", "Stars shine at night. Stars are far away.", epochs=2)
    assert ask(tutor_service, student="switched", max_new_tokens=12).adapter_used == "switched"
    engine = tutor_service.engine
    object.__setattr__(engine, "fingerprint", "another-base-model")  # as if another model were configured
    result = ask(tutor_service, student="switched", max_new_tokens=12)
    assert result.adapter_used is None and result.response == base
    with pytest.raises(ConflictError, match="another base model"):
        tutor_service.chat_completion(ChatCompletionRequest(model="aivo-tutor:switched",
                                                            messages=[ChatMessage(role="user", content="hi")]))
