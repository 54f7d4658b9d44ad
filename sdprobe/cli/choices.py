"""The names the command line offers as choices, kept here so that building the parser (and ``--help``) imports no
torch. Each tuple equals the library constant named beside it; ``tests/test_cli.py`` checks that they agree."""

METHODS = ("magnitude", "magnitude-global", "wanda", "random", "owl-magnitude", "owl-wanda", "nm")  # prune.factory
STORES = ("auto", "memory", "cpu", "disk")  # prune.storage
PRIORS = ("score", "magnitude")  # isolate.config
WINDOWS = ("transition", "bracket", "sudden")  # isolate.config
METRICS = ("oracle", "distance", "clipscore", "fid", "unreadable", "clip-attributes", "fd-clip")  # metrics.registry
MEANING_METRICS = ("oracle", "clip-attributes")  # metrics.registry
CLIP_TRAINING = {"seed": 0, "steps": 3000, "batch_size": 256, "lr": 1e-3}  # organism.train_clip.ClipTrainConfig
PLANTING = {"seed": 0, "steps": 6000, "batch_size": 256, "lr": 5e-4, "paths": 2, "sparsity": 0.3525}  # organism.planted.PlantConfig
TRACKERS = ("tensorboard", "mlflow")  # trackers.KINDS
