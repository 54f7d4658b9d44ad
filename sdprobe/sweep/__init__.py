"""Progressive pruning sweeps (configuration and runner)."""

from sdprobe.sweep.config import DEFAULT_GROUP, METHODS, ComponentPlan, SweepConfig
from sdprobe.sweep.run import load_config, run_sweep, sweep_prompts

__all__ = ["DEFAULT_GROUP", "METHODS", "ComponentPlan", "SweepConfig", "load_config", "run_sweep", "sweep_prompts"]
