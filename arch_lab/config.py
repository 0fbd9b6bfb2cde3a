"""The experiment schema: one typed, validated YAML per run.

Every section rejects unknown keys, and every validation error names the offending key path, e.g.
``train.max_step: unknown key (valid keys: ...)``. The resolved config is written into each run directory.

Validation runs in two stages (:func:`experiment_from_dict`): first the structure (YAML, keys, types, ranges),
which needs neither torch nor the metric code, so a mistyped key is reported at once; then the checks that need the
library's registries (network knobs, ``train.select_metric``), which import them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from arch_lab.errors import ConfigError
from arch_lab.recipes import apply_recipe

#: Validation context key: check the structure only, not against the registries (no torch, no metric code).
STRUCTURE_ONLY = "structure_only"


def _structure_only(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(STRUCTURE_ONLY))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticConfig(_Section):
    """A synthetic perturb-seq benchmark with known ground truth (``data.synthetic``; see ``docs/tasks.md``).

    Genes belong to co-regulated programs (or to the background); perturbations shift program activities, so
    the genes of a program move together. ``locality`` sets how contiguous each program is in the gene order.

    Parameters
    ----------
    n_genes
        Genes in total.
    n_programs
        Co-regulated gene programs.
    program_size
        Genes per program; the ``n_genes - n_programs * program_size`` others are background.
    n_states
        Cell states (obs ``cell_type``: ``S1``, ``S2``, ...).
    n_single
        Single perturbations (``P01``, ``P02``, ...).
    max_programs_per_perturbation
        Each single shifts between 1 and this many programs.
    effect_range
        Range of the absolute program-activity shift of a single (natural-log units); the sign is random.
    n_combinations
        Measured pairs of singles (``P01+P05``).
    interaction_fraction
        Fraction of the pairs with an interaction term; the others are additive.
    interaction_strength
        An interacting pair's shift on the programs it touches is the sum of its singles' shifts times
        ``1 + strength`` (synergy) or ``1 - strength`` (buffering).
    state_response_range
        Each (single, state) scales the single's shift by a factor drawn from this range.
    state_gene_sd, state_program_sd
        Standard deviations of each state's baseline offsets per gene and per program activity.
    gene_baseline_sd
        Standard deviation of the genes' baseline log expression.
    loading_range
        Range of a program gene's loading (how strongly it follows its program's activity).
    program_noise_sd
        Cell-to-cell noise of every program's activity.
    response_cv
        Coefficient of variation of the per-cell response strength (a gamma factor with mean 1).
    library_size
        Median total count per cell.
    library_sd
        Standard deviation of the log library size.
    dispersion
        Negative-binomial overdispersion phi (variance = mu + phi mu^2); 0 gives Poisson counts.
    cells_per_condition
        Cells per (perturbation, state).
    control_cells
        Control cells per state.
    locality
        1 keeps every program's genes in one contiguous block of the gene order, 0 is a uniformly random
        order; in between, a random fraction ``1 - locality`` of the genes swap places among themselves.
    seed
        Seed of the whole benchmark (the gene order has its own stream: ``locality`` changes nothing else).
    layout_seed
        Seed of the gene order's stream; ``None`` (the default) takes ``seed``. Setting it puts the genes of
        another benchmark (``seed``) in the order that ``seed = layout_seed`` would have: program ``p``'s genes
        land on the same positions, so one gene order can be crossed with several generated biologies.
    """

    n_genes: int = Field(default=256, gt=1, description="Genes in total.")
    n_programs: int = Field(default=16, gt=0, description="Co-regulated gene programs.")
    program_size: int = Field(default=12, gt=1, description="Genes per program; the rest are background.")
    n_states: int = Field(default=3, gt=1, description="Cell states (obs cell_type S1, S2, ...).")
    n_single: int = Field(default=12, gt=1, description="Single perturbations (P01, P02, ...).")
    max_programs_per_perturbation: int = Field(default=2, gt=0, description="A single shifts 1..this many programs.")
    effect_range: tuple[float, float] = Field(
        default=(0.5, 1.2), description="Range of a single's absolute program-activity shift (log units)."
    )
    n_combinations: int = Field(default=12, ge=0, description="Measured pairs of singles (P01+P05).")
    interaction_fraction: float = Field(default=0.5, ge=0, le=1, description="Fraction of pairs that interact.")
    interaction_strength: float = Field(
        default=0.6, ge=0, lt=1, description="Interacting pairs scale their summed shift by 1 +/- this."
    )
    state_response_range: tuple[float, float] = Field(
        default=(0.5, 1.5), description="Range of the per-(single, state) response scale."
    )
    state_gene_sd: float = Field(default=0.3, ge=0, description="SD of per-state gene baseline offsets.")
    state_program_sd: float = Field(default=0.4, ge=0, description="SD of per-state program activity offsets.")
    gene_baseline_sd: float = Field(default=0.8, ge=0, description="SD of gene baseline log expression.")
    loading_range: tuple[float, float] = Field(default=(0.5, 1.0), description="Range of program gene loadings.")
    program_noise_sd: float = Field(default=0.25, ge=0, description="Cell-to-cell program activity noise (SD).")
    response_cv: float = Field(default=0.3, ge=0, description="CV of the per-cell response strength.")
    library_size: float = Field(default=5000.0, gt=0, description="Median total count per cell.")
    library_sd: float = Field(default=0.3, ge=0, description="SD of the log library size.")
    dispersion: float = Field(default=0.1, ge=0, description="Negative-binomial overdispersion (0: Poisson).")
    cells_per_condition: int = Field(default=100, gt=1, description="Cells per (perturbation, state).")
    control_cells: int = Field(default=300, gt=1, description="Control cells per state.")
    locality: float = Field(default=1.0, ge=0, le=1, description="Contiguity of programs in the gene order.")
    seed: int = Field(default=0, ge=0, description="Seed of the benchmark.")
    layout_seed: int | None = Field(default=None, ge=0, description="Seed of the gene order (default: seed).")

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.n_programs * self.program_size > self.n_genes:
            raise ValueError("n_programs * program_size exceeds n_genes; raise n_genes or shrink the programs")
        if self.max_programs_per_perturbation > self.n_programs:
            raise ValueError("max_programs_per_perturbation exceeds n_programs")
        if self.n_combinations > self.n_single * (self.n_single - 1) // 2:
            raise ValueError("n_combinations exceeds the number of pairs of singles; lower it or raise n_single")
        return self

    @field_validator("effect_range", "state_response_range", "loading_range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError("expected (low, high) with 0 <= low <= high")
        return value


class DataConfig(_Section):
    """Where the cells are and how to read them.

    Parameters
    ----------
    path
        An ``.h5ad`` file. Relative paths are resolved against the experiment YAML's folder, then the
        current directory.
    synthetic
        Generate the cells in memory instead (see :class:`SyntheticConfig`); give exactly one of ``path`` and
        ``synthetic``.
    perturbation_key
        obs column holding the perturbation label (e.g. ``condition``).
    control_value
        The label of control cells in that column (e.g. ``control``, ``ctrl``).
    covariate_keys
        obs columns whose joint value is the covariate state (e.g. ``[cell_type]``).
    combination_delimiter
        Separator of combined perturbations (``A+B``).
    layer
        Read expression from this layer instead of ``X``.
    counts
        What to do when the matrix holds raw counts: ``normalize`` (total-count to the median, log1p, with a
        logged message) or ``refuse``.
    max_genes
        Keep this many highly variable genes (plus every measured perturbed gene); ``null`` keeps all.
    hvg
        How ``max_genes`` ranks the genes: ``dispersion`` (the default: normalised dispersion of the
        log-normalised data, the Seurat recipe), ``seurat_v3`` (scanpy's ``highly_variable_genes(flavor=
        "seurat_v3")`` on raw counts, PerturBench's choice; needs the ``scverse`` extra), ``mean``: the most
        highly expressed genes (largest mean of the log-normalised matrix), or ``var``: keep the genes marked in an
        existing boolean ``var['highly_variable']`` column (``max_genes`` unset).
    counts_layer
        ``hvg: seurat_v3`` only: the layer holding raw counts when the expression matrix is log-normalised (when
        the matrix itself holds counts they are used before normalisation).
    subset
        Keep only cells whose obs column values are in the given lists, e.g. ``{cell_type: [A172, T98G]}``.
    gene_order
        Order of the gene axis seen by networks: ``as_stored``, ``reversed``, ``random``, ``clustered`` or
        ``file`` (the order of ``gene_order_file``).
    gene_order_file
        ``gene_order: file`` only: a text file with one gene name per line (``#`` comments and blank lines
        ignored), e.g. genes sorted by genome position. Every kept gene must be listed; listed genes the data
        does not keep are skipped. Relative paths resolve against the YAML's folder, then the working directory.
    gene_order_shift
        Roll that order cyclically: the gene at position ``i`` moves to ``(i + shift) mod G``. Neighbours stay
        neighbours (but the two end genes meet); what moves is where each gene lies against the array's ends and
        a convolutional network's down-sampling grid.
    storage
        ``memory`` reads the whole matrix; ``backed`` keeps it on disk (``.h5ad`` or ``.zarr``, dense or CSR,
        already log-normalised) and trains from shuffled chunks of rows (see ``docs/large_data.md``).
    chunk_size
        Backed only: rows per contiguous read.
    shuffle_buffer
        Backed only: chunks held in memory at once; batches are drawn from all of them.
    gene_key
        Backed only: boolean var column selecting the genes (e.g. ``highly_variable``), applied before
        ``max_genes``.
    """

    path: str | None = None
    synthetic: SyntheticConfig | None = None
    perturbation_key: str = "condition"
    control_value: str = "control"
    covariate_keys: list[str] = Field(default_factory=list)
    combination_delimiter: str = "+"
    layer: str | None = None
    counts: Literal["normalize", "refuse"] = "normalize"
    max_genes: int | None = Field(default=None, gt=0)
    hvg: Literal["dispersion", "seurat_v3", "mean", "var"] = "dispersion"
    counts_layer: str | None = None
    subset: dict[str, list[str]] = Field(default_factory=dict)
    gene_order: Literal["as_stored", "reversed", "random", "clustered", "file"] = "as_stored"
    #: Seed of the ``random`` gene order: an integer, ``run`` (the experiment's seed, so replicate seeds see
    #: different permutations) or None (the task's seed).
    gene_order_seed: int | Literal["run"] | None = None
    gene_order_shift: int = 0
    gene_order_file: str | None = None
    storage: Literal["memory", "backed"] = "memory"
    chunk_size: int = Field(default=2048, gt=0)
    shuffle_buffer: int = Field(default=4, gt=0)
    gene_key: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'path' (an .h5ad file) or 'synthetic' (e.g. synthetic: {})")
        if self.storage == "backed" and self.path is None:
            raise ValueError("storage: backed reads a file; give data.path")
        if self.gene_key is not None and self.storage != "backed":
            raise ValueError("gene_key needs storage: backed (in memory, use max_genes)")
        if self.hvg != "dispersion" and self.storage == "backed":
            raise ValueError(f"hvg: {self.hvg} reads the whole matrix; with storage: backed mark genes beforehand and "
                             "name the column with gene_key")  # fmt: skip
        if self.hvg in ("seurat_v3", "mean") and self.max_genes is None:
            raise ValueError(f"hvg: {self.hvg} ranks genes for max_genes; set max_genes (e.g. 2000)")
        if self.hvg == "var" and self.max_genes is not None:
            raise ValueError("hvg: var keeps the genes marked in var['highly_variable']; drop max_genes")
        if self.counts_layer is not None and self.hvg != "seurat_v3":
            raise ValueError("counts_layer is read by hvg: seurat_v3 only; drop it or set hvg: seurat_v3")
        if (self.gene_order == "file") != (self.gene_order_file is not None):
            raise ValueError("gene_order: file reads data.gene_order_file, and only it does; give both or neither")
        return self


class HoldoutEntry(_Section):
    """One manual hold-out: a perturbation in a covariate state, or a whole state (``perturbation`` omitted)."""

    perturbation: str | None = None
    covariates: dict[str, str]
    split: Literal["val", "test"] | None = None


class TaskConfig(_Section):
    """How cells are split into train/val/test.

    Parameters
    ----------
    kind
        ``covariate_transfer``, ``combination`` or ``manual``.
    seed
        Split seed (independent of the training seed, so replicate seeds share one split).
    heldout_fraction
        Fraction of perturbations (transfer) or eligible combinations (combination) held out per state.
    max_heldout_per_state
        Cap on held-out pairs per state.
    max_heldout_states
        Transfer only: at most this many states hold out a given perturbation.
    min_train_states
        Transfer only: a held-out perturbation stays in training in at least this many states.
    holdout
        Manual only: the pairs or whole states to hold out.
    control_fractions
        Train/val/test fractions of the control cells of each state. A split that holds no condition of a state
        takes none of its controls; its share stays in training.
    split_file
        Load the split from this ``split.csv`` instead of computing it; a PerturBench split file (headerless
        ``cell_id,split`` rows) works too.
    n_folds
        Cross-validation over the held-out conditions (``covariate_transfer`` and ``combination``): every eligible
        (perturbation, state) pair is assigned to one of ``n_folds`` folds; fold ``fold`` is the test split and the
        next fold (``fold + 1`` modulo ``n_folds``) the val split, so over the folds every eligible pair is tested
        exactly once. ``heldout_fraction`` and ``max_heldout_per_state`` do not apply. None: one seeded split.
    fold
        Which fold this run tests, ``0 <= fold < n_folds``.
    """

    kind: Literal["covariate_transfer", "combination", "manual"]
    seed: int = 0
    heldout_fraction: float = Field(default=0.3, gt=0, le=1)
    max_heldout_per_state: int = Field(default=200, gt=0)
    max_heldout_states: int = Field(default=1, gt=0)
    min_train_states: int = Field(default=1, ge=1)
    holdout: list[HoldoutEntry] = Field(default_factory=list)
    control_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    split_file: str | None = None
    n_folds: int | None = Field(default=None, ge=2)
    fold: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if self.kind == "manual" and not self.holdout and self.split_file is None:
            raise ValueError("a manual task needs a non-empty 'holdout' list")
        if abs(sum(self.control_fractions) - 1.0) > 1e-6 or min(self.control_fractions) < 0:
            raise ValueError("control_fractions must be three non-negative numbers summing to 1")
        if self.n_folds is not None and self.kind == "manual":
            raise ValueError("n_folds: folds choose the held-out pairs, a manual task lists them; drop one of them")
        if self.n_folds is None and self.fold != 0:
            raise ValueError("fold: set n_folds too (fold counts from 0 to n_folds - 1)")
        if self.n_folds is not None and self.fold >= self.n_folds:
            raise ValueError(f"fold: {self.fold} is out of range for n_folds={self.n_folds} (0 to {self.n_folds - 1})")
        return self


class MethodConfig(_Section):
    """Which method produces predictions and its own options.

    ``flow_matching`` uses the ``network``, ``flow``, ``optim`` and ``train`` sections. Baselines
    (``no_change``, ``perturbation_mean``, ``linear_additive``, ``latent_additive``) read ``params``.
    """

    name: str = "flow_matching"
    params: dict[str, Any] = Field(default_factory=dict)


class MatchFlopsConfig(_Section):
    """``train.match_flops``: spend the training FLOPs of a reference network trained for ``steps`` steps.

    The budget is ``steps x`` the reference's FLOPs per training step, counted by :mod:`arch_lab.flops` at the
    task's gene count and the run's batch, so an equal-compute comparison stays exact when the gene count
    changes.

    Parameters
    ----------
    reference
        The reference network: ``{name: unet1d, ...knobs}``.
    steps
        Training steps of the reference.
    """

    reference: dict[str, Any]
    steps: int = Field(gt=0)

    @model_validator(mode="after")
    def _named(self) -> MatchFlopsConfig:
        if "name" not in self.reference:
            raise ValueError("train.match_flops.reference needs a network name, e.g. {name: unet1d}")
        return self


class MatchParametersConfig(_Section):
    """``network.match_parameters``: choose one integer knob so the network has a target parameter count.

    Parameters
    ----------
    reference
        A network whose parameter count at the task's gene count is the target: ``{name: unet1d, ...knobs}``.
    target
        A plain target parameter count (instead of ``reference``).
    knob
        The integer knob to choose (default: the network class's ``match_knob``, e.g. ``mlp`` width,
        ``gene_transformer`` dim, ``unet1d`` base_channels).
    tolerance
        Largest accepted relative difference to the target.
    """

    reference: dict[str, Any] | None = None
    target: int | None = Field(default=None, gt=0)
    knob: str | None = None
    tolerance: float = Field(default=0.05, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _plain_target(cls, value: Any) -> Any:
        return {"target": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_target(self) -> MatchParametersConfig:
        if (self.reference is None) == (self.target is None):
            raise ValueError("give exactly one of 'reference' ({name: unet1d, ...}) or 'target' (a count)")
        if self.reference is not None and not isinstance(self.reference.get("name"), str):
            raise ValueError("reference needs a network 'name', e.g. {name: unet1d}")
        return self


class NetworkConfig(BaseModel):
    """The velocity network: ``name`` from the registry, every other key is a constructor knob.

    ``match_parameters`` (optional, see :class:`MatchParametersConfig`) is not a knob: it picks the value of one
    knob when the network is built, against the task's gene count.

    The knobs are checked here, once, against the named network's ``Config`` (and ``match_parameters`` against
    its integer knobs): an unknown network, key or value raises :class:`~arch_lab.errors.ConfigError` with the
    registry's one-line message, e.g. ``unknown key 'network.widht' for network 'mlp': valid keys are ...``.
    """

    model_config = ConfigDict(extra="allow")
    name: str = "mlp"
    match_parameters: MatchParametersConfig | None = None

    def knobs(self) -> dict[str, Any]:
        """The constructor arguments (everything but ``name`` and ``match_parameters``)."""
        return {k: v for k, v in self.model_dump().items() if k not in ("name", "match_parameters")}

    @model_validator(mode="after")
    def _known_knobs(self, info: ValidationInfo) -> NetworkConfig:
        if _structure_only(info):
            return self
        # Imported here: the registry imports torch and the networks; it never imports this module.
        from arch_lab.networks import check_match_config, validate_network_config

        knobs = self.knobs()
        validate_network_config(self.name, knobs)  # ConfigError passes through pydantic unchanged
        if self.match_parameters is not None:
            check_match_config(self.name, knobs, self.match_parameters.model_dump())
        return self


class FlowConfig(_Section):
    """The flow-matching objective and sampler.

    ``source``: ``gaussian`` (N(0, I), the default) or ``control`` (control cells of the same state).
    """

    source: Literal["gaussian", "control"] = "gaussian"
    #: Centre of the Gaussian source: ``zero`` (N(0, I)) or ``train`` (N(m, I), ``m`` each gene's mean over the
    #: training cells; the velocity then no longer carries the data's mean expression). Ignored for ``control``.
    source_mean: Literal["zero", "train"] = "zero"
    sigma: float = Field(default=0.0, ge=0)
    time_sampler: Literal["uniform", "logit_normal"] = "uniform"
    coupling: Literal["independent", "exact_ot"] = "independent"
    cond_dropout: float = Field(default=0.1, ge=0, le=1)
    guidance: float = 1.0
    solver: Literal["euler", "midpoint", "rk4", "dopri5"] = "euler"
    steps: int = Field(default=20, gt=0)
    rtol: float = 1e-4
    atol: float = 1e-4
    #: Weight of the distribution-level auxiliary loss (grouped MMD of one-step endpoint estimates against the
    #: target cells, per condition; see :class:`arch_lab.flow.objective.FlowMatchingObjective`); 0: none.
    mmd_weight: float = Field(default=0.0, ge=0)
    #: Rows with earlier training times are left out of the MMD term.
    mmd_min_t: float = Field(default=0.5, ge=0, lt=1)
    #: ``all``: the MMD's cross term includes each endpoint's own coupled target (a pull towards its OT partner);
    #: ``distinct``: it leaves out pairs of the same target cell. See :class:`arch_lab.flow.FlowMatchingObjective`.
    mmd_pairs: Literal["all", "distinct"] = "all"
    #: Generated values below this are set to zero: ``auto`` (half the smallest non-zero value of the training
    #: cells, the step from zero in log-normalised expression), a number, or null (keep every value; the default).
    #: See :func:`arch_lab.methods.flow.zero_threshold`.
    zero_threshold: float | Literal["auto"] | None = None


class OptimConfig(_Section):
    """AdamW with linear warm-up and cosine decay."""

    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=100, ge=0)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    ema_decay: float | None = Field(default=0.999, ge=0, lt=1)
    #: Apply the EMA every this many steps with the product of their decays (see :class:`arch_lab.training.ema.EMA`);
    #: 1 updates every step. The pass over all weights costs about as much as the optimizer's for wide networks.
    ema_every: int = Field(default=10, ge=1)
    batch_size: int = Field(default=256, gt=0)
    #: Run forward and backward over blocks of at most this many rows and accumulate the gradients (same loss
    #: and gradients as the whole batch at once, up to float rounding): for batches whose activations do not
    #: fit in accelerator memory, or spill the CPU caches. None: the whole batch at once. ``auto``: the block size
    #: at which forward and backward run fastest on this machine, timed on one batch before training
    #: (:mod:`arch_lab.training.micro_batch`; recorded in the run's ``metrics.json`` as ``fit.micro_batch_size``).
    micro_batch_size: int | Literal["auto"] | None = Field(default=None)

    @field_validator("micro_batch_size")
    @classmethod
    def _positive_block(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value <= 0:
            raise ValueError("micro_batch_size must be a positive number of rows, auto, or null (the whole batch)")
        return value

    conditions_per_batch: int = Field(default=8, gt=0)


class TrainConfig(_Section):
    """Training length, evaluation and checkpoints."""

    max_steps: int = Field(default=2000, gt=0)
    #: Wall-clock budget of training in seconds (None: none): training stops after the first step past it, with
    #: a last validation, so runs compared at equal wall time can be asked for (``fit.time_limited`` records it).
    max_seconds: float | None = Field(default=None, gt=0)
    #: Equal-compute budget: train ``ceil(max_flops / flops_per_step)`` steps (at most ``max_steps``), with
    #: ``flops_per_step`` counted by :mod:`arch_lab.flops`. None trains ``max_steps`` steps.
    max_flops: float | None = Field(default=None, gt=0)
    #: Equal compute against a reference network (instead of a number): see :class:`MatchFlopsConfig`.
    match_flops: MatchFlopsConfig | None = None
    eval_every: int = Field(default=500, gt=0)
    #: Validate the untrained model too (step 0), so that it can be the selected checkpoint: a flow from control
    #: cells whose network starts at zero velocity then never scores worse on validation than leaving the cells
    #: unchanged (what a null effect asks for).
    validate_at_start: bool = False
    #: Validate on conditions the model trains on too: this fraction of the cells of every training condition is
    #: held out of training and joins the val split (see :func:`arch_lab.data.splits.hold_out_training_cells`).
    #: A val split of one or two held-out conditions can favour a model that is wrong on most others (on a
    #: cell-type transfer fold, one weak-responding val cell type picks the untrained flow); the held-out cells of
    #: the training conditions weigh in against that. Test cells and the test conditions' source controls are
    #: untouched. 0 (the default): the val split is the task's alone.
    val_train_fraction: float = Field(default=0.0, ge=0, lt=1)
    val_conditions: int = Field(default=8, gt=0)
    val_cells: int = Field(default=64, gt=0)
    select_metric: str = "energy_distance"
    patience: int | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)
    #: ``auto``: bf16 autocast where the device computes it faster (a CUDA device with bf16; a CPU whose bf16
    #: matrix products time at least 1.2x faster than fp32, see :mod:`arch_lab.training.precision`), else fp32.
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    compile: bool = False
    threads: int | None = Field(default=None, gt=0)
    progress: bool = True
    #: Where the training curve goes (per-step loss, learning rate, gradient norm and step time; validation
    #: metrics at validation steps): ``csv`` (the run's ``train_log.csv``), ``tensorboard`` (the run's
    #: ``tensorboard/`` folder), ``wandb`` and ``mlflow`` (optional extras, imported only when named).
    loggers: list[Literal["csv", "tensorboard", "wandb", "mlflow"]] = Field(default=["csv", "tensorboard"])
    #: Log the training values every this many steps (validation metrics are logged at every validation).
    log_every: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if self.max_flops is not None and self.match_flops is not None:
            raise ValueError("set train.max_flops or train.match_flops, not both")
        if len(set(self.loggers)) != len(self.loggers):
            raise ValueError(f"loggers: each logger once (got {self.loggers})")
        return self

    @field_validator("select_metric")
    @classmethod
    def _known_metric(cls, value: str, info: ValidationInfo) -> str:
        if _structure_only(info):
            return value
        from arch_lab.metrics.info import METRICS  # the metric package imports scipy: second stage only

        if value not in METRICS:
            raise ValueError(
                f"unknown metric {value!r}; the best checkpoint is chosen by one of: {', '.join(sorted(METRICS))}"
            )
        return value


class EvalConfig(_Section):
    """Scoring of the evaluated split."""

    split: Literal["val", "test"] = "test"
    n_cells: Literal["observed"] | int = "observed"
    pca_components: int = Field(default=50, gt=0)
    deg_top_k: int = Field(default=50, gt=0)
    energy_max_cells: int | None = Field(default=500, gt=1)
    reference_points: bool = True


class ExperimentConfig(_Section):
    """A whole experiment: data, task, method and how to train and evaluate it."""

    name: str
    seed: int = 0
    output_dir: str = "runs"
    #: Tuned settings that fill the keys this config leaves unset (see :mod:`arch_lab.recipes`): ``recommended``
    #: (the recipe of ``network.name``), a recipe's name or YAML path, or ``none``.
    recipe: str = "none"
    data: DataConfig
    task: TaskConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    # defaults built without validation: the registries are imported in the second stage only, and are valid
    network: NetworkConfig = Field(default_factory=lambda: NetworkConfig.model_construct())
    flow: FlowConfig = Field(default_factory=FlowConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig.model_construct())
    eval: EvalConfig = Field(default_factory=EvalConfig)
    #: Folder the YAML was read from; relative data paths are resolved against it.
    base_dir: str | None = None


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line naming the first offending key path of a pydantic error."""
    e = err.errors()[0]
    path = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
    if e["type"] == "extra_forbidden":
        return f"{path}: unknown key; remove it or fix its spelling"
    if e["type"] == "missing":
        return f"{path}: required key is missing"
    msg = e["msg"].replace("Value error, ", "")
    got = e.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"  # a whole section says nothing the message does not
    return f"{path or '<root>'}: {msg}{shown}"


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set ``d['a']['b'] = value`` for ``key='a.b'``, creating dictionaries on the way."""
    parts = key.split(".")
    node = d
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with one-line errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found; check the path")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: malformed YAML{where}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def experiment_from_dict(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Validate a raw mapping (plus dotted ``overrides``) into an :class:`ExperimentConfig`.

    A ``recipe`` (see :mod:`arch_lab.recipes`) fills the keys left unset, after the overrides. The structure is
    checked first, without importing torch or the metric code, so that a key or type error is
    reported in well under a second; then the network knobs and ``train.select_metric`` against the registries.

    Raises
    ------
    ConfigError
        One line naming the first offending key path.
    """
    raw = copy.deepcopy(raw)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    raw = apply_recipe(raw)
    try:
        ExperimentConfig.model_validate(raw, context={STRUCTURE_ONLY: True})
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load and validate an experiment YAML.

    Parameters
    ----------
    path
        The YAML file.
    overrides
        Dotted keys applied before validation, e.g. ``{"network.name": "mlp", "seed": 3}``.

    Returns
    -------
    ExperimentConfig
        The validated config; ``base_dir`` is set to the YAML's folder.
    """
    raw = load_yaml(path)
    raw.setdefault("base_dir", str(Path(path).resolve().parent))
    return experiment_from_dict(raw, overrides)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value read as YAML, so numbers, lists and booleans work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. network.width=256")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {text!r}: the key is empty; expected KEY=VALUE, e.g. network.width=256")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML; quote it, e.g. {key.strip()}='...'") from None


#: Keys that do not change what a run computes (where it is written, how it reports), left out of its hash.
_UNHASHED = {"output_dir": None, "base_dir": None, "train": ("progress", "threads")}
#: Keys added after checkpoints were written, with a default that computes what the config did before they existed:
#: hashed only when set to something else, so that adding one leaves every earlier checkpoint resumable. A new key
#: joins this list with its default.
_HASHED_WHEN_SET: dict[str, dict[str, Any]] = {"data": {"gene_order_file": None}}


def config_hash(cfg: ExperimentConfig) -> str:
    """A short hash of everything in the config that changes what a run computes.

    Stored in checkpoints, so that a resume can check the checkpoint belongs to the run's config. Where the run
    is written (``output_dir``, ``base_dir``) and how it reports progress (``train.progress``, ``train.threads``)
    are left out, and so are keys added later while they hold the default that reproduces the earlier behaviour
    (``_HASHED_WHEN_SET``), so a checkpoint written before a key existed still resumes.
    """
    data = cfg.model_dump(mode="json")
    for key, inner in _UNHASHED.items():
        if inner is None:
            data.pop(key, None)
        else:
            for sub in inner:
                data.get(key, {}).pop(sub, None)
    for key, defaults in _HASHED_WHEN_SET.items():
        section = data.get(key) or {}
        for sub, default in defaults.items():
            if sub in section and section[sub] == default:
                del section[sub]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def resolve_path(cfg: ExperimentConfig, path: str) -> Path:
    """Resolve a config-relative path (the YAML's folder first, then the current directory)."""
    p = Path(path)
    if p.is_absolute():
        return p
    if cfg.base_dir is not None:
        cand = Path(cfg.base_dir) / p
        if cand.exists():
            return cand
    return Path.cwd() / p
