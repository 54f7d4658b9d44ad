"""Progressive pruning sweeps (configuration and runner)."""

from sdprobe.sweep.config import METHODS, ComponentPlan, SweepConfig
from sdprobe.sweep.run import DenseImages, load_config, run_sweep, sweep_prompts

__all__ = ["METHODS", "ComponentPlan", "DenseImages", "SweepConfig", "load_config", "run_sweep", "sweep_prompts"]
