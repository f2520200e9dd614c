"""Search spaces: an Optuna trial in, a validated `trainers.TrainConfig` out.

>>> import optuna, search_spaces
>>> space = search_spaces.load("optimizers")          # built-in name, YAML path or module:function
>>> trial = optuna.create_study().ask()
>>> config = space.suggest(trial, overrides={"epochs": 5}, n_inputs=64, n_classes=10)

`search_spaces.builtin()` maps built-in names to their descriptions; every problem with a
space is a `SpaceError` (a ValueError) naming the file, the parameter and what is allowed.
The YAML format is described in `search_spaces.params`. A space for a user's model or
trainer function (``load(name, target="model")``) also holds names of the user's own;
``space.draw(trial)`` returns them beside the TrainConfig (`Draw`).
"""

from search_spaces.budget import count_params, width_for_budget
from search_spaces.errors import SpaceError
from search_spaces.loader import builtin, load, parse
from search_spaces.space import DEFAULT_N_CLASSES, DEFAULT_N_INPUTS, TARGETS, Draw, Space

__all__ = [
    "DEFAULT_N_CLASSES",
    "DEFAULT_N_INPUTS",
    "TARGETS",
    "Draw",
    "Space",
    "SpaceError",
    "builtin",
    "count_params",
    "load",
    "parse",
    "width_for_budget",
]
