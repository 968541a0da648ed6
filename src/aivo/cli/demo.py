"""`aivo demo` (the main job end to end on embedded defaults) and `aivo recommend LEARNER`."""

from __future__ import annotations

import typer
from rich.table import Table

from aivo.cli.app import JsonOption, app, console, emit, registry, settings, stored_learner, to_jsonable
from aivo.cli.brain import _metrics_table


def _render_recommendation(rec, *, title: str) -> None:
    console.rule(title)
    table = Table(title="per skill", title_justify="left")
    for col in ("skill", "decision", "mastery", "attempts", "recent acc.", "reason"):
        table.add_column(col, overflow="fold")
    for d in rec.skills[:8]:
        table.add_row(d.skill_id, d.decision, f"{d.mastery:.2f}", str(d.attempts),
                      "-" if d.recent_accuracy is None else f"{d.recent_accuracy:.2f}", d.reason)
    console.print(table)
    items = Table(title=f"next items (target success {rec.target_success:.2f})", title_justify="left")
    for col in ("item", "skills", "P(correct)", "level", "reason"):
        items.add_column(col, overflow="fold")
    for s in rec.next_items:
        items.add_row(s.item_id, ";".join(s.skill_ids), f"{s.p_correct:.2f}",
                      "-" if s.difficulty_level is None else str(s.difficulty_level), s.reason)
    console.print(items)


@app.command("recommend")
def recommend_cmd(
    learner: str = typer.Argument(..., help="The learner's id as your school system knows it."),
    num_items: int = typer.Option(5, "--items", min=1, max=100, help="How many next items to suggest."),
    policy: str = typer.Option(None, "--policy", help="aivo-gain or aivo-target (default: AIVO_RECOMMENDATION_POLICY, "
                                                       "aivo-gain)."),
    as_json: bool = JsonOption,
) -> None:
    """Next items (by the recommendation policy) and a LEVEL_UP/LEVEL_DOWN/STAY/REVIEW decision per skill."""
    # start-up: the Main Brain's libraries (torch) load only when the command runs
    from aivo.services.recommendations import recommend_for_learner

    rec = recommend_for_learner(registry=registry(), settings=settings(), num_items=num_items,
                                learner_id=stored_learner(learner, False), policy_name=policy)
    emit(to_jsonable(rec.as_dict()), as_json=as_json,
         render=lambda _: _render_recommendation(rec, title=f"learner {learner}"))


@app.command("demo")
def demo(
    learners: int = typer.Option(2000, "--learners", "-n", min=10, help="Simulated learners."),
    interactions: int = typer.Option(100, "--interactions", min=5, help="Interactions per learner."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of everything [AIVO_SEED]."),
    show: int = typer.Option(3, "--show", min=0, max=20, help="Learners to show recommendations for."),
    personalize: int = typer.Option(50, "--personalize", min=0,
                                    help="Learners to clone and train locally before one federated round (0: skip)."),
    as_json: bool = JsonOption,
) -> None:
    """Simulate a cohort, store it, train and evaluate the Main Brain, clone and train learners
    locally, run one federated round with user-level DP, show recommendations."""
    from aivo.services.demo import run_demo  # start-up: torch loads only when the command runs

    cfg = settings()
    report = run_demo(settings=cfg, num_learners=learners, interactions_per_learner=interactions,
                      seed=cfg.seed if seed is None else seed, num_shown=show,
                      num_personalized=min(personalize, learners), progress=not as_json)

    def render(_) -> None:
        r = report
        console.rule("AIVO demo")
        console.print(f"simulated {r.num_learners} learners x {r.interactions_per_learner} interactions "
                      f"(seed {r.seed}) in {r.seconds['simulate']:.1f}s; stored "
                      f"{r.imported['rows_inserted']} new interactions in the registry "
                      f"({r.seconds['import']:.1f}s)")
        t = r.training
        console.print(f"Main Brain [bold]{t['version']}[/]: best epoch {t['best_epoch']} of {t['epochs_run']}, "
                      f"{t['train_seconds']:.1f}s; {'promoted' if t['promoted'] else 'not promoted'} "
                      f"({t['promotion_reason']})")
        console.print(_metrics_table("test learners: model vs oracle (true probabilities)",
                                     {"Main Brain": t["test"]["metrics"], "oracle": t["test"]["oracle"]}))
        for col, groups in t["test"]["subgroups"].items():
            console.print(_metrics_table(f"test by {col}", groups))
        if r.report_path:
            console.print(f"plots: [bold]{r.report_path}[/]")
        if r.personalization:
            _render_personalization(r.personalization, r.federated)
        from aivo.brain.recommend import ItemSuggestion, Recommendation, SkillDecision  # start-up (pandas)

        for raw_id, rec in r.recommendations.items():
            _render_recommendation(Recommendation(
                learner_id=rec["learner_id"], target_success=rec["target_success"],
                next_items=[ItemSuggestion(**i) for i in rec["next_items"]],
                skills=[SkillDecision(**s) for s in rec["skills"]], mastery=rec["mastery"]),
                title=f"recommendations for {raw_id}")

    emit(to_jsonable(report), as_json=as_json, render=render)


def _render_personalization(p: dict, f: dict) -> None:
    def fmt(x):
        return "-" if x is None else f"{x:.4f}"

    console.rule("per-learner clones and federated learning")
    console.print(f"{p['clones_trained']} clones trained, each on its own learner's interactions only "
                  f"(median {p['median_seconds_per_learner']:.2f}s per learner, {p['personal_bytes']} bytes of "
                  f"personal parameters each): {p['active']} served personalized, {p['fallback']} fall back to the "
                  f"Main Brain because they validated worse on the learner's most recent interactions")
    console.print(f"held-out log-loss on those recent interactions: Main Brain {fmt(p['mean_holdout_log_loss_main'])}, "
                  f"clones {fmt(p['mean_holdout_log_loss_personal'])}")
    for warning in f["warnings"]:
        console.print(f"[yellow]privacy warning:[/] {warning}")
    counts, privacy = f["counts"], f["privacy"]
    console.rule("federated round across three schools (Flower, SecAgg+, user-level DP)")
    console.print(f"{f['runtime']}: each school keeps its learners' interactions, clones and ledger in its own "
                  f"registry; the coordinator holds the Main Brain and no interactions ({f['coordinator_home']})")
    table = Table(title="what each site sent", title_justify="left")
    for col in ("site", "learners", "pool", "sampled", "in the sum", "sum norm", "status"):
        table.add_column(col)
    for site in f["sites"]:
        sent = site["sent"] or {}
        table.add_row(site["site"], str(site["learners"]), str(sent.get("pool", "-")), str(sent.get("sampled", "-")),
                      str(sent.get("accepted", "-")),
                      "-" if sent.get("sum_norm") is None else f"{sent['sum_norm']:.4f}", site["status"])
    console.print(table)
    console.print(f"  each site sent one vector: the sum of its sampled learners' updates, each clipped to norm "
                  f"{privacy.get('clip_norm')} ({f['sites'][0]['sent'] and f['sites'][0]['sent'].get('values')} "
                  "values), and 4 counts; SecAgg+ masked it, so the coordinator learned only the sum across the "
                  "three schools, then added Gaussian noise of std noise multiplier x clip norm to it")
    console.print(f"  round ({f['strategy']}): [bold]{f['status']}[/]: {f['message']}")
    console.print(f"  learners: pool {counts.get('pool', 0)}, sampled {counts.get('sampled', 0)}, "
                  f"aggregated {counts.get('accepted', 0)} from {counts.get('sites', 0)} sites; federated evaluation "
                  f"(sites' metric sums): AUC before {fmt(f['metrics_before'].get('auc'))}, after "
                  f"{fmt(f['metrics_after'].get('auc'))}")
    if f["status"] == "rejected" and privacy.get("enabled"):
        console.print("  (with few learners the noise added for user-level DP, std = noise multiplier x clip norm on "
                      "the sum, outweighs their updates; the gate keeps the Main Brain from getting worse)")
    if privacy.get("epsilon_round") is not None:
        console.print(f"  privacy: noise multiplier {privacy.get('noise_multiplier')}, clip norm "
                      f"{privacy.get('clip_norm')}, sampling rate {privacy.get('sample_rate')}; epsilon of the round "
                      f"{fmt(privacy.get('epsilon_round'))} at delta {privacy.get('delta')}, charged in each school's "
                      "own ledger (`aivo site status`, `aivo federation status`)")
