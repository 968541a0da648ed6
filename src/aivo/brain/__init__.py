"""The Main Brain: knowledge-tracing learner model, training, evaluation, recommendations."""
