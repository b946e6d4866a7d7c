"""The planner's answer for a preset: the Pareto front and the recommendation."""

from __future__ import annotations

from pathlib import Path


from ... import plan as PL
from ...model import scenario as SC
from ..common import Section, plotting, save_figure


def plan_section(out: Path, preset: str = "cori-knl-hep", epochs: float = 10,
                 deadline_s: float = 1800.0) -> Section:
    """The planner on a preset: Pareto front of time vs node-hours and the recommendation."""
    plt, sns = plotting()
    s, _ = SC.load_for_plan(preset)
    if not s["workload"]["dataset_samples"]:
        return Section("Planning a cluster run", missing="the scenario states no "
                       "workload.dataset_samples, so an epoch has no size")
    curve = PL.apply_epoch_curve(s, None)  # a zoo network's published epochs against batch
    user = s["plan_hints"]["batch_per_worker"]  # the scenario's own batch is searched too
    batches = tuple(sorted(set(PL.BATCHES) | ({user} if user else set())))
    feasible, facts = PL.search(s, PL.Target(epochs=epochs), None, deadline_s, None,
                                batches=batches)
    if feasible.empty:
        return Section("Planning", missing=f"no feasible plan: {facts.get('binding')}")
    front = PL.pareto(feasible)
    chosen = PL.recommend(feasible, deadline_s)
    front.to_csv(out / "plan_pareto.csv", index=False)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sample = feasible.sample(min(len(feasible), 20000), random_state=0)
    sns.scatterplot(data=sample, x="time_s", y="node_hours", hue="strategy", s=6,
                    alpha=0.3, linewidth=0, ax=ax)
    ax.plot(front.time_s, front.node_hours, "k-", lw=1.5, label="Pareto front")
    target = PL.Target(epochs=epochs)
    pred = PL.chosen_prediction(s, chosen)
    t_lo, t_hi = PL.time_interval_s(s, chosen, target, pred)
    a_lo, a_hi = PL.throughput_time_interval_s(chosen, pred)
    ax.errorbar([chosen.time_s], [chosen.node_hours], xerr=[[chosen.time_s - t_lo],
                [t_hi - chosen.time_s]], color="red", lw=1, capsize=3, zorder=4)
    ax.scatter([chosen.time_s], [chosen.node_hours], marker="*", s=200, color="red",
               label="recommended", zorder=5)
    ax.axvline(deadline_s, color="grey", ls="--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="time to solution (s)", ylabel="node-hours",
           title=f"plan: {preset}, {epochs:g} epochs" + (
               f", deadline {deadline_s / 60:g} min" if deadline_s != float("inf") else ""))
    ax.legend(fontsize=8)
    f = save_figure(fig, out, "plan_pareto.png")
    why = "; ".join(PL.why_not(feasible, chosen))
    return Section("Planning a cluster run", figures=[f], tables=["plan_pareto.csv"],
                   text=f"{facts['evaluated']} configurations searched. Recommended (fewest "
                        f"node-hours within the deadline): {chosen.strategy}, "
                        f"{PL.describe_configuration(chosen)} on {chosen.nodes} nodes, {PL.format_duration(chosen.time_s)},"
                        f" {chosen.node_hours:.4g} node-hours, chosen at the preset's "
                        f"nominal inputs; over every corner of its uncertain inputs it takes "
                        f"{PL.format_duration(t_lo)} to {PL.format_duration(t_hi)} (the throughput's inputs "
                        f"alone: {PL.format_duration(a_lo)} to {PL.format_duration(a_hi)}; the rest is the epochs "
                        f"the convergence assumptions charge), so it "
                        f"{'meets' if t_hi <= deadline_s else 'can miss'} the deadline. "
                        f"Why the others lose: {why}. " + " ".join(
                            n[0].upper() + n[1:] + ("" if n.endswith(".") else ".")
                            for n in curve),
                   captions={f: "Every configuration the planner evaluated (a sample), time "
                                "to solution against node-hours; the line is the Pareto front, "
                                "the star the recommendation (its bar: the time over the "
                                "uncertain inputs), the dashed line the deadline. "
                                "Batches past the preset's noise scale are charged the extra "
                                "epochs they cost."})


#: the published OS-noise measurement behind the detour default (perfmodel.model.stragglers)
#: one switch at a time on the Perlmutter preset, ResNet-50 at batch 32 per GPU
