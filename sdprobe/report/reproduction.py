"""The report's one reproduction section: commands, commit, environment and every configuration, folded away.

Runs of one study share their environment, so it is shown once for every group of runs that share it, rather
than once per run. The section is collapsed in the page; its title stays in the table of contents.
"""

from __future__ import annotations

import json

from sdprobe.report import compute
from sdprobe.report.load import RunData, StudyData
from sdprobe.report.tree import Section, Table, Text, fmt

PER_RUN_KEYS = ("created", "command")  # environment keys that differ between runs of one setup
NOT_RECORDED = "not recorded"


def _cell(value) -> str:
    if isinstance(value, (list, dict)):
        return fmt(json.dumps(value, default=str))
    return fmt(value)


def _key_value(d: dict, caption: str) -> Table:
    return Table(["key", "value"], [[k, _cell(v)] for k, v in compute.flatten(d)], caption=caption)


def _environment_groups(items: list[tuple[str, dict]]) -> list[tuple[list[str], dict]]:
    """Group (name, environment) pairs whose environments agree on everything but :data:`PER_RUN_KEYS`."""
    groups: dict[str, tuple[list[str], dict]] = {}
    for name, env in items:
        shared = {k: v for k, v in env.items() if k not in PER_RUN_KEYS}
        key = json.dumps(shared, sort_keys=True, default=str)
        groups.setdefault(key, ([], shared))[0].append(name)
    return list(groups.values())


def _provenance_rows(items: list[tuple[str, dict]]) -> list[list[str]]:
    rows = []
    for name, env in items:
        rows.append([name, fmt(env.get("command") or NOT_RECORDED), fmt(env.get("git_commit") or NOT_RECORDED),
                     fmt(env.get("sdprobe")), fmt(env.get("created"))])
    return rows


def reproduction_section(sources: list[RunData | StudyData]) -> Section:
    """Commands and commits, the environments (once per group of runs that share one), study plans and configs.

    Args:
        sources (list[RunData | StudyData]): the report's sources.

    Returns:
        Section: collapsed, titled "Reproduction".
    """
    studies = [s for s in sources if isinstance(s, StudyData)]
    runs = [r for s in sources for r in (s.runs if isinstance(s, StudyData) else [s])]
    envs = [(f"study {s.name}", s.meta.get("environment") or {}) for s in studies if s.meta.get("environment")]
    envs += [(r.name, r.environment) for r in runs if r.environment]
    sec = Section("Reproduction", collapsed=True)
    sec.add(Text("Each run folder holds its config.json and environment.json; `sdprobe study RECIPE` or the "
                 "command below rebuilds it. Every table of this section is read from those files.", style="note"))
    if envs:
        sec.add(Table(["run", "command", "git commit", "sdprobe", "created"], _provenance_rows(envs),
                      caption="how each run was made (\"not recorded\": made by an sdprobe that did not yet record "
                              "commands and commits)"))
        for names, env in _environment_groups(envs):
            who = "every run" if len(names) == len(envs) else ", ".join(names)
            sec.add(_key_value(env, f"environment of {who}"))
    else:
        sec.add(Text("No environment.json was found.", style="warning"))
    for s in studies:
        plan = Section(f"Study plan: {s.name}")
        if s.meta.get("config"):
            plan.add(_key_value(s.meta["config"], "study.json: the recipe as run"))
        stages = s.meta.get("stages") or {}
        if stages:
            plan.add(Table(["stage", "status", "seconds", "note"],
                           [[k, fmt(v.get("status")), fmt(v.get("seconds")), fmt(v.get("note"))]
                            for k, v in stages.items() if isinstance(v, dict)], caption="study.json: stages"))
        sec.add(plan)
    for r in runs:
        sec.add(Section(f"Configuration: {r.name}").add(_key_value(r.config, "config.json")))
    return sec
