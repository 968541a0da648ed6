"""Feedback on an assessed answer: strengths, areas for improvement, next steps.

The lists are built from the score's evidence (matched and missing rubric keywords, topic
similarity), so they are always true to what the student wrote. The short feedback text is
a template by default; when a real LLM is configured it writes that text instead
(`feedback_messages` is its prompt), and the accommodations shape either one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aivo.tutor.accommodations import ensure_terminal, shape_response
from aivo.tutor.assessment import AssessmentScore, Rubric
from aivo.tutor.prompting import StudentContext, build_system_prompt


@dataclass(frozen=True)
class Feedback:
    feedback: str
    strengths: list[str]
    areas_for_improvement: list[str]
    next_steps: str


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _topic(rubric: Rubric) -> str:
    return rubric.learning_objective or "this topic"


def evidence(score: AssessmentScore, rubric: Rubric) -> tuple[list[str], list[str]]:
    """(strengths, areas for improvement), each a list of short sentences."""
    strengths: list[str] = []
    areas: list[str] = []
    if not score.on_topic:
        areas.append(ensure_terminal(f"Answer the question that was asked{': ' + rubric.question if rubric.question else ''}"))
        return ["You wrote an answer, and that is a good start."], areas
    if score.matched_keywords:
        strengths.append(f"You used the key idea{'s' if len(score.matched_keywords) > 1 else ''} "
                         f"{_join(score.matched_keywords)}.")
    if score.similarity is not None and score.similarity >= 0.7:
        strengths.append("Your answer is close to the model answer.")
    elif score.similarity is not None and score.similarity >= 0.45:
        strengths.append("Your answer is on the right topic.")
    if score.misconceptions:
        areas.append(f"Check this idea again: \"{score.misconceptions[0]}\" is a common mix-up.")
    if score.missing_keywords:
        areas.append(f"Include {_join(score.missing_keywords)} in your answer.")
    if score.correctness < 65 and score.matched_keywords == [] and score.similarity is not None \
            and score.similarity >= 0.45:
        areas.append("Check your facts: your answer is on topic but misses what makes it correct.")
    if not strengths:
        strengths.append("You gave it a try, and trying is how we learn.")
    if not areas and score.correctness < 85:
        areas.append("Add more detail to explain your thinking.")
    return strengths, areas


def next_step(score: AssessmentScore, rubric: Rubric) -> str:
    topic = _topic(rubric)
    level = score.understanding_level
    if level == "excellent":
        return f"Try a harder question about {topic}."
    if level == "good":
        missing = f" ({_join(score.missing_keywords)})" if score.missing_keywords else ""
        return f"Add the missing detail{missing}, then try another question about {topic}."
    if level == "developing":
        return f"Review {topic} with a worked example, then try again."
    return f"Start with the basics of {topic}: ask your tutor to explain it step by step."


def template_feedback(*, score: AssessmentScore, rubric: Rubric, context: StudentContext) -> Feedback:
    strengths, areas = evidence(score, rubric)
    openers = {"excellent": "Excellent work!", "good": "Good job, you are on the right track.",
               "developing": "You have part of the idea.", "beginning": "Let's build this idea together."}
    parts = [openers.get(score.understanding_level, "Thanks for your answer.")]
    if not score.on_topic:
        parts = ["This answer seems to be about something else."]
    if areas:
        parts.append(areas[0])
    text = shape_response(" ".join(parts), context.accommodations, frame=False)
    return Feedback(feedback=text, strengths=strengths, areas_for_improvement=areas,
                    next_steps=next_step(score, rubric))


def feedback_messages(*, answer: str, score: AssessmentScore, rubric: Rubric,
                      context: StudentContext) -> list[dict[str, str]]:
    """The prompt that asks the LLM for two or three sentences of feedback."""
    strengths, areas = evidence(score, rubric)
    facts = [f"Question: {rubric.question}" if rubric.question else "",
             f"Learning objective: {rubric.learning_objective}" if rubric.learning_objective else "",
             f"Model answer: {rubric.references[0]}" if rubric.references else "",
             f"Student answer: {answer}",
             f"Score: {score.correctness:.0f} out of 100 ({score.understanding_level}).",
             f"Strengths: {' '.join(strengths)}", f"To improve: {' '.join(areas) or 'nothing major'}"]
    request = ("Write two or three short sentences of feedback to the student. Start with what they did "
               "well, then name one thing to improve. Do not give a grade.")
    return [{"role": "system", "content": build_system_prompt(context)},
            {"role": "user", "content": "\n".join(f for f in facts if f) + "\n\n" + request}]
