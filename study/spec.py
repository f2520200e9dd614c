"""The study spec: a YAML file read into a pydantic model, every field typed and checked.

Every field has a default, so six lines are a whole study::

    name: quick-optimizers
    dataset: digits
    space: optimizers
    fixed: {epochs: 5}
    trials: 8
    concurrency: 2

Short forms: ``dataset: digits`` is ``dataset: {name: digits}``, ``pruner: median`` is
``pruner: {name: median}``, ``sampler: random`` is ``sampler: {name: random}`` and
``objective: val_acc`` is ``objective: {metric: val_acc}``. Errors are `SpecError`s naming
the field, the value and what is allowed (a misspelt field name suggests the right one).

``seed`` (the study seed: the sampler's seed and every trial's training seed derive from it)
defaults to a number derived from the study's name (`name_seed`), so a study is
reproducible, and two studies over the same space do not try the same configurations first.

Relative paths in a spec file (a space file or a ``module:function`` space next to it, a
dataset file, the user's ``model:`` or ``trainer:`` file) are resolved against the spec
file's folder first (`StudySpec.base_dir`, recorded with the study so that ``study resume``
resolves them the same way), then against the working folder.

Your own code: ``model: FILE.py:build`` (or ``package.module:build``) trains your
``torch.nn.Module`` with hpstudy's torch trainer; ``trainer: FILE.py:trial`` runs your own
training function (see `trainers.user_model` and `trainers.user_trainer` for the contracts).
The space (a name, a file, or a mapping written inline under ``space:``) then holds names of
your own beside the TrainConfig fields.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from search_spaces.yamlfile import YamlFileError, read_yaml
from study.comparison import CompareSpec
from study.errors import SpecError
from trainers.data import BUILTIN, FILE_SUFFIXES, DataError, Dataset, is_file_name, load_dataset
from trainers.user_code import UserCodeError, split_ref

#: Record fields a trial reports every epoch (``EpochRecord.metrics()``), plus per-layer
#: ``grad_norm_<i>``/``weight_norm_<i>`` and the run's constant ``n_params``.
RECORD_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "sparsity", "dead_units", "seconds", "batch_loss")
_LAYER_METRIC = re.compile(r"^(grad_norm|weight_norm)_\d+$")
#: A user module's per-tensor norms, named after its parameters (``grad_norm.conv1.weight``).
_NAMED_METRIC = re.compile(r"^(grad_norm|weight_norm)\.[\w.]+$")
#: A metric a trainer function reports: any name MLflow accepts as a metric key.
_USER_METRIC = re.compile(r"^[A-Za-z_][\w.\-/]{0,249}$")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
Direction = Literal["minimize", "maximize"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _short(key: str) -> Any:
    """A before-validator turning a bare string into ``{key: string}``."""

    def convert(cls: Any, v: Any) -> Any:
        return {key: v} if isinstance(v, str) else v

    return model_validator(mode="before")(classmethod(convert))  # type: ignore[arg-type]


class DatasetSpec(_Model):
    """The study's data: a built-in name or a file for training (``name``, or ``train``,
    which reads better beside files), and the validation and test splits, each a fraction
    carved from it (stratified, seeded by ``seed``) or a file of its own::

        dataset: mnist1d                                  # official test split, val 0.2 of train
        dataset: {name: data.csv, val: 0.2, test: 0.2}
        dataset: {train: a.npz, test: b.npz}              # fixed test set, val carved from a.npz
        dataset: {train: a.csv, val: v.csv, test: t.csv}

    Relative file paths are relative to the spec file's folder (see `load`)."""

    name: str = "digits"
    val: float | str = 0.2
    test: float | str = 0.0
    seed: int = Field(0, ge=0)
    label_column: str = "label"
    args: dict[str, Any] = Field(default_factory=dict, description="generator arguments of a built-in task")

    _from_str = _short("name")

    @model_validator(mode="before")
    @classmethod
    def _train_is_name(cls, v: Any) -> Any:
        """``train`` is another spelling of ``name`` (stored as ``name``)."""
        if isinstance(v, dict) and "train" in v:
            if "name" in v:
                raise ValueError("give the training data as `name` or as `train`, not both")
            v = {("name" if k == "train" else k): x for k, x in v.items()}
        return v

    @field_validator("val", "test", mode="before")
    @classmethod
    def _fraction_or_file(cls, v: Any, info: ValidationInfo) -> Any:
        files = ", ".join(FILE_SUFFIXES)
        if isinstance(v, str):
            if not v.lower().endswith(FILE_SUFFIXES):
                raise ValueError(f"must be a fraction or a file ({files})")
            return v
        is_test = info.field_name == "test"
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not number or not (0 <= v < 1 if is_test else 0 < v < 1):
            raise ValueError(f"must be a fraction with {'0 <= test' if is_test else '0 < val'} < 1 or a file ({files})")
        return float(v)

    def load(self, base_dir: str | os.PathLike[str] | None = None) -> Dataset:
        """Load, check, split and standardize the data (`trainers.load_dataset`). Relative
        file paths resolve against `base_dir` (the spec file's folder) when given, else the
        working folder; built-in names are never paths. Any problem with the data is a
        `SpecError` starting ``field dataset:`` and naming the file."""

        def path(p: float | str) -> float | str:
            if isinstance(p, float):
                return p
            p = os.path.expanduser(p)
            return p if base_dir is None or os.path.isabs(p) else os.path.join(os.fspath(base_dir), p)

        name = self.name if self.name in BUILTIN or not is_file_name(self.name) else str(path(self.name))
        try:
            return load_dataset(
                name, val=path(self.val), test=path(self.test), seed=self.seed, label_column=self.label_column, **self.args
            )
        except DataError as e:
            raise SpecError(f"field dataset: {e}") from None


class ConfirmSpec(_Model):
    """``confirm:`` when the search ends, re-train its top `top` trials on `seeds` fresh seeds
    and rank them (`study confirm`): the winner is then the best mean over seeds, not the
    best single run. ``confirm: true`` takes the defaults."""

    top: int = Field(3, ge=2, le=20)
    seeds: int = Field(3, ge=2, le=50)


class ObjectiveSpec(_Model):
    """What a trial is scored by: a record field at the best epoch (the weights early
    stopping keeps) or at the last epoch. ``direction`` defaults to maximize for ``*_acc`` (and ``*accuracy``)
    and minimize otherwise."""

    metric: str = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None
    scope: Literal["best", "last"] = "best"

    _from_str = _short("metric")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str, info: ValidationInfo) -> str:
        """What the trial reports: the record's fields (a user model's named norms with
        ``model:``), or any metric name for a ``trainer:`` function (`parse_spec` says which)."""
        target = (info.context or {}).get("target", "mlp")
        if target == "trainer":
            if _USER_METRIC.match(v):
                return v
            raise ValueError(f"metric {v!r} is not a metric name: letters, digits, '_', '.', '-' or '/', starting with a letter")
        if v in RECORD_METRICS or v == "n_params":
            return v
        if target == "model" and _NAMED_METRIC.match(v):
            return v
        if target == "mlp" and _LAYER_METRIC.match(v):
            return v
        layers = (
            "grad_norm.<parameter>, weight_norm.<parameter>" if target == "model" else "grad_norm_<layer>, weight_norm_<layer>"
        )
        raise ValueError(
            f"unknown metric {v!r}; allowed: {', '.join(RECORD_METRICS)}, n_params, {layers}"
            + ("" if target == "model" else " (a `trainer:` function may report any metric)")
        )

    @property
    def resolved_direction(self) -> Direction:
        if self.direction is not None:
            return self.direction
        return "maximize" if self.metric.endswith(("_acc", "accuracy")) else "minimize"


class SamplerSpec(_Model):
    """Optuna sampler. TPE is multivariate with the constant liar by default, so trials in
    flight are treated as bad results and parallel workers do not all pick the same spot.
    ``grid`` maps each parameter to its list of values."""

    name: Literal["tpe", "random", "gp", "cmaes", "nsga2", "grid"] = "tpe"
    seed: int | None = Field(None, ge=0, description="default: the study seed")
    n_startup_trials: int | None = Field(None, ge=0)
    multivariate: bool = True
    constant_liar: bool = True
    population_size: int | None = Field(None, ge=2, description="nsga2 only")
    grid: dict[str, list[Any]] | None = None

    _from_str = _short("name")

    @model_validator(mode="after")
    def _grid(self) -> SamplerSpec:
        if self.name == "grid" and not self.grid:
            raise ValueError("sampler grid needs `grid: {param: [values, ...], ...}`")
        if self.name != "grid" and self.grid is not None:
            raise ValueError(f"`grid` is only for the grid sampler, not {self.name!r}")
        if self.grid and any(len(v) == 0 for v in self.grid.values()):
            raise ValueError("every grid parameter needs at least one value")
        if self.population_size is not None and self.name != "nsga2":
            raise ValueError("population_size is only for the nsga2 sampler")
        return self


class _Pruner(_Model):
    _from_str = _short("name")


class NoPruner(_Pruner):
    name: Literal["none"]


class PercentilePruner(_Pruner):
    """Prune when a trial's value at a step is worse than the percentile of earlier trials'
    values at that step. Median is percentile 50."""

    name: Literal["median", "percentile"]
    percentile: float = Field(50.0, gt=0, lt=100)
    n_startup_trials: int = Field(4, ge=0)
    n_warmup_steps: int = Field(2, ge=0)
    interval_steps: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _median_is_50(self) -> PercentilePruner:
        if self.name == "median" and self.percentile != 50.0:
            raise ValueError("the median pruner is percentile 50; use name: percentile to set another")
        return self


class HalvingPruner(_Pruner):
    """Successive halving (ASHA) or Hyperband over epochs as the resource: a trial reaching
    rung ``k`` (epoch ``min_resource * reduction_factor**k``) goes on only if its value is in
    the best ``1/reduction_factor`` of the values trials reached at that rung.

    ``auto`` derives both resources from the trials' ``epochs`` (the spec's ``fixed`` or the
    space's): ``min_resource = max(1, epochs // reduction_factor**3)`` (at most four rungs:
    1, 3, 9, 27 for 30 epochs at factor 3) and, for Hyperband, ``max_resource = epochs``.
    The default pruner is ``successive_halving`` with these defaults (benchmarks/search_efficiency.py
    compares it with the median pruner, Hyperband and Ray Tune + ASHA)."""

    name: Literal["successive_halving", "hyperband"]
    min_resource: int | Literal["auto"] = "auto"
    max_resource: int | Literal["auto"] = Field("auto", description="hyperband only")
    reduction_factor: int = Field(3, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0, description="successive_halving only")

    @field_validator("min_resource", "max_resource")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be an integer >= 1 or 'auto'")
        return v


class PatientPruner(_Pruner):
    """Wraps another pruner and only lets it prune after ``patience`` epochs without an
    improvement of more than ``min_delta``."""

    name: Literal["patient"]
    patience: int = Field(2, ge=0)
    min_delta: float = Field(0.0, ge=0)
    wrapped: Annotated[NoPruner | PercentilePruner | HalvingPruner, Field(discriminator="name")] | None = None

    @field_validator("wrapped", mode="before")
    @classmethod
    def _wrapped_str(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


PrunerSpec = Annotated[NoPruner | PercentilePruner | HalvingPruner | PatientPruner, Field(discriminator="name")]
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "patient")


class Resources(_Model):
    """What one trial holds on a Ray node. Fractional GPUs let several trials share one."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class StudySpec(_Model):
    """A whole study. See the module docstring for the short forms."""

    name: str
    dataset: DatasetSpec = Field(default_factory=lambda: DatasetSpec.model_validate({}))
    backend: Literal["numpy", "torch"] = "numpy"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    model: str | None = Field(None, description="your model factory, FILE.py:build or package.module:build (torch backend)")
    trainer: str | None = Field(None, description="your training function, FILE.py:trial or package.module:trial")
    space: str | dict[str, Any] = Field("full", description="built-in name, YAML file, module:function, or a mapping inline")
    fixed: dict[str, Any] = Field(default_factory=dict)
    objective: ObjectiveSpec = Field(default_factory=lambda: ObjectiveSpec.model_validate({}))
    objectives: list[ObjectiveSpec] | None = Field(None, min_length=2, description="several objectives: a multi-objective study")
    sampler: SamplerSpec = Field(default_factory=lambda: SamplerSpec.model_validate({}))
    pruner: PrunerSpec = Field(default_factory=lambda: HalvingPruner.model_validate({"name": "successive_halving"}))
    seed: int = Field(0, ge=0, lt=2**32, description="default: derived from the name (name_seed)")
    trials: int = Field(20, ge=1, le=1_000_000)
    concurrency: int | None = Field(None, ge=1, description="trials in flight; default: what the cluster's CPUs hold")
    resources: Resources = Field(default_factory=lambda: Resources.model_validate({}))
    retries: int = Field(1, ge=0, description="re-runs of a trial whose worker died")
    timeout: float | None = Field(None, gt=0, description="seconds per trial, from its start")
    time_budget: float | None = Field(
        None, gt=0, description="seconds for the whole run (90s, 30m, 2h or a number): no trial starts after it"
    )
    storage: str | None = Field(None, description="Optuna storage URL; default a journal file in .hpstudy/")
    tracking_uri: str = "sqlite:///mlflow.db"
    enqueue: list[dict[str, Any]] = Field(default_factory=list, description="known parameter sets to try first")
    compare: CompareSpec | None = Field(None, description="a comparison (designed experiment) instead of a search")
    confirm: ConfirmSpec | None = Field(None, description="re-train the top trials on fresh seeds when the search ends")

    @field_validator("confirm", mode="before")
    @classmethod
    def _confirm_short(cls, v: Any) -> Any:
        if v is True:
            return {}
        return None if v is False else v

    @model_validator(mode="before")
    @classmethod
    def _comparison(cls, v: Any) -> Any:
        """A comparison never prunes and trains each of its runs once: its pruner is none and
        its ``trials`` the number of runs its design makes (`CompareSpec.n_runs`)."""
        if not isinstance(v, dict) or v.get("compare") is None:
            return v
        v = dict(v)
        pruner = v.get("pruner", "none")
        name = pruner.get("name") if isinstance(pruner, dict) else getattr(pruner, "name", pruner)
        if name != "none":
            raise ValueError(
                f"pruner: a comparison never prunes (every run goes to its end, so the arms compare over the same "
                f"seeds); leave pruner out or set it to none, got {name!r}"
            )
        v["pruner"] = "none"
        try:
            comp = CompareSpec.model_validate(v["compare"])
        except ValidationError:
            return v  # the compare field's own validation names the problem
        if v.get("trials") not in (None, comp.n_runs):
            raise ValueError(
                f"trials: a comparison trains each of its {comp.n_runs} runs once (arms x seeds, plus the lr tuning "
                f"runs); leave trials out, got {v['trials']!r}"
            )
        v["trials"] = comp.n_runs
        return v

    #: The folder of the spec file (None: the spec did not come from a file); see the module.
    _base_dir: str | None = PrivateAttr(default=None)
    #: Fields whose value came from an environment variable (field -> variable name), so that
    #: an error about the value can say where it came from.
    _env_vars: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("seed") is None and isinstance(data.get("name"), str):
            return {**data, "seed": name_seed(data["name"])}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(NAME_PATTERN, v):
            raise ValueError("must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return v

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @field_validator("model", "trainer")
    @classmethod
    def _code_ref(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            try:
                split_ref(v, role=str(info.field_name))
            except UserCodeError:
                raise ValueError(
                    "must be FILE.py:function or package.module:function (the function a Python identifier)"
                ) from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _model_means_torch(cls, v: Any) -> Any:
        """``model:`` implies ``backend: torch`` (the trainer of user modules); with your own
        code the default space is empty (the built-in ``full`` space is the MLP's), so that
        ``fixed:`` alone describes a study of seeds."""
        if isinstance(v, dict) and v.get("model") is not None and "backend" not in v:
            v = {**v, "backend": "torch"}
        if isinstance(v, dict) and (v.get("model") is not None or v.get("trainer") is not None) and "space" not in v:
            v = {**v, "space": {"parameters": {}}}
        return v

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_str(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "name" in v and v["name"] not in PRUNERS:
            raise ValueError(f"unknown pruner {v['name']!r}; allowed: {', '.join(PRUNERS)}")
        return v

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives_str(cls, v: Any) -> Any:
        return [{"metric": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if self.model is not None and self.trainer is not None:
            raise ValueError(
                "give either `model` (your torch module, trained by hpstudy) or `trainer` (your training function), not both"
            )
        if self.model is not None and self.backend != "torch":
            raise ValueError(
                f"a `model` is trained by the torch backend; backend must be torch (the default with model:), got {self.backend!r}"
            )
        if self.trainer is not None and (self.backend != "numpy" or self.device != "cpu"):
            raise ValueError(
                "`backend` and `device` choose hpstudy's own trainer; a `trainer` function trains by itself: remove them"
            )
        if self.device != "cpu" and self.backend == "numpy":
            raise ValueError(f"device {self.device!r} needs backend: torch (the numpy backend runs on cpu only)")
        if self.objectives is not None and "objective" in self.model_fields_set:
            raise ValueError("give either `objective` or `objectives` (several), not both")
        if self.sampler.name == "cmaes" and self.is_multi_objective:
            raise ValueError("the cmaes sampler handles one objective; use nsga2, tpe or random for several")
        if self.confirm is not None:
            refused = {
                "a comparison": self.compare is not None,
                "a multi-objective study": self.is_multi_objective,
                f"a study of your own {self.code[0] if self.code else 'code'}": self.code is not None,
            }
            what = next((w for w, yes in refused.items() if yes), None)
            if what is not None:
                raise ValueError(
                    f"confirm: re-trains the top trials of a single-objective search of the built-in MLP, not {what}; remove it"
                )
        if self.compare is not None:
            if self.code is not None:  # its arms are TrainConfigs: a model's or trainer's own values would be lost
                raise ValueError(
                    f"a comparison (and `study confirm`) runs arms of TrainConfig settings on the built-in MLP; "
                    f"a study of your own {self.code[0]} ({self.code[1]}) cannot be compared yet"
                )
            if self.space != "full":
                raise ValueError(
                    f"space: a comparison's runs are its arms over `fixed`, no space is searched; remove space ({self.space!r})"
                )
            if self.enqueue or self.is_multi_objective:
                raise ValueError("a comparison runs its own arms: enqueue and objectives do not apply; remove them")
        return self

    @property
    def is_comparison(self) -> bool:
        return self.compare is not None

    # -- derived ---------------------------------------------------------------------------
    @property
    def target(self) -> Literal["mlp", "model", "trainer"]:
        """What the trials train: the built-in MLP, the user's ``model`` or ``trainer`` function."""
        return "model" if self.model is not None else "trainer" if self.trainer is not None else "mlp"

    @property
    def code(self) -> tuple[str, str] | None:
        """``(role, reference)`` of the user's code (role ``model`` or ``trainer``), or None."""
        if self.model is not None:
            return "model", self.model
        return ("trainer", self.trainer) if self.trainer is not None else None

    def path(self, p: str) -> str:
        """A path from the spec, resolved against `base_dir` (the spec file's folder)."""
        p = os.path.expanduser(p)
        return p if self.base_dir is None or os.path.isabs(p) else os.path.join(self.base_dir, p)

    @property
    def is_multi_objective(self) -> bool:
        return self.objectives is not None

    @property
    def all_objectives(self) -> list[ObjectiveSpec]:
        return list(self.objectives) if self.objectives is not None else [self.objective]

    @property
    def directions(self) -> list[Direction]:
        return [o.resolved_direction for o in self.all_objectives]

    @property
    def pruning(self) -> bool:
        """Pruning is on only for a single-objective study with a pruner other than none."""
        return not self.is_multi_objective and self.pruner.name != "none"

    @property
    def base_dir(self) -> str | None:
        """The folder relative paths of this spec resolve against first (see the module)."""
        return self._base_dir

    def env_var(self, field: str) -> str | None:
        """The environment variable `field`'s value came from (None: not from one)."""
        return self._env_vars.get(field)

    def with_context(self, *, base_dir: str | None = None, env_vars: dict[str, str] | None = None) -> StudySpec:
        """A copy with the spec's folder and/or the fields set from environment variables recorded."""
        new = self.model_copy()
        new._base_dir = base_dir if base_dir is not None else self._base_dir
        new._env_vars = {**self._env_vars, **(env_vars or {})}
        return new

    def with_overrides(self, **changes: Any) -> StudySpec:
        """A copy with the CLI's overrides (None means keep), validated again."""
        data = self.model_dump()
        given = {k: v for k, v in changes.items() if v is not None}
        data.update(given)
        new = parse_spec(data, source="command line")
        new._base_dir = self._base_dir
        new._env_vars = {k: v for k, v in self._env_vars.items() if k not in given}
        return new


def name_seed(name: str) -> int:
    """The default study seed of study `name`: the first 4 bytes of SHA-256(name), an integer
    in [0, 2**32); the same on every machine and Python (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` or ``"45"`` (seconds) in seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError("must be a duration such as 90s, 30m, 2h, 1d or a number of seconds")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]


def format_errors(err: ValidationError, source: str) -> str:
    """One message for all of pydantic's errors, each naming its field: ``spec.yaml: field
    trials: Input should be greater than or equal to 1 (got 0)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not _is_union_tag(p))
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        where = f"field {loc}" if loc else "spec"
        shown = "" if e["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + suggest(str(e["loc"][-1]), _known_fields(e["loc"][:-1]))
        lines.append(f"{where}: {msg}{shown}")
    head = f"{source}: " if len(lines) == 1 else f"{source}: {len(lines)} problems\n  "
    return head + "\n  ".join(lines)


def suggest(name: str, known: list[str] | tuple[str, ...] | set[str] | frozenset[str]) -> str:
    """``"; did you mean 'trials'?"`` for a misspelt name, else ``"; allowed: a, b, ..."``."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed: {', '.join(sorted(known))}" if known else ""


#: The model of each nested part of a spec, by the field that holds it.
_PARTS: dict[str, tuple[type[BaseModel], ...]] = {
    "dataset": (DatasetSpec,),
    "objective": (ObjectiveSpec,),
    "objectives": (ObjectiveSpec,),
    "sampler": (SamplerSpec,),
    "pruner": (NoPruner, PercentilePruner, HalvingPruner, PatientPruner),
    "wrapped": (NoPruner, PercentilePruner, HalvingPruner),
    "resources": (Resources,),
}


def _known_fields(loc: tuple[Any, ...]) -> set[str]:
    """The field names allowed at `loc` (a pydantic error location, less the unknown name)."""
    parts = [p for p in loc if isinstance(p, str) and not _is_union_tag(p)]
    models: tuple[type[BaseModel], ...] = _PARTS.get(parts[-1], ()) if parts else (StudySpec,)
    return {f for m in models for f in m.model_fields}


def _is_union_tag(p: Any) -> bool:
    """pydantic puts the chosen union member (``median``, ``function-before[...]``) into the
    location; those are not field names."""
    return isinstance(p, str) and (p in PRUNERS or p.startswith("function-"))


def parse_spec(data: Any, *, source: str = "spec") -> StudySpec:
    """Validate a plain mapping into a `StudySpec`; a `SpecError` on any problem."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec must be a mapping of fields (name, dataset, space, ...), got {type(data).__name__}")
    try:
        target = "model" if data.get("model") is not None else "trainer" if data.get("trainer") is not None else "mlp"
        return StudySpec.model_validate(data, context={"target": target})
    except ValidationError as e:
        raise SpecError(format_errors(e, source)) from None


def load_spec(path: str | os.PathLike[str]) -> StudySpec:
    """Read and validate a YAML spec file (`search_spaces.yamlfile`: safe, bounded) and
    record its folder (`StudySpec.base_dir`)."""
    path = os.fspath(path)
    try:
        data = read_yaml(path, "spec")
    except YamlFileError as e:
        raise SpecError(str(e)) from None
    return parse_spec(data, source=path).with_context(base_dir=os.path.dirname(os.path.abspath(path)))
