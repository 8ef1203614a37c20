"""Run configuration: one YAML file + dotted overrides, validated before anything loads."""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

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

from tailor.yamlfile import YamlFileError, read_mapping_file


class ConfigError(Exception):
    """A user mistake in the configuration; str() lists every problem at once."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"config {source}\n" + "\n".join(f"  {p}" for p in problems))


def _takes_list(annotation: Any) -> bool:
    """list[...] or list[...] | None, where a single name may stand for a list of one."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(get_origin(a) is list for a in options) and all(get_origin(a) is list or a is type(None) for a in options)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _one_as_list(cls, v: Any) -> Any:
        """A single name where a list is expected is a list of one (report_to: tensorboard)."""
        if isinstance(v, dict):
            singles = [k for k, f in cls.model_fields.items() if isinstance(v.get(k), str) and _takes_list(f.annotation)]
            if singles:
                v = {**v, **{k: [v[k]] for k in singles}}
        return v


class ArchConfig(Strict):
    """A model initialised from scratch (no pre-trained weights)."""

    family: Literal["gpt2", "llama", "gpt_neox"] = Field("gpt2", description="architecture family")
    n_layer: int = Field(4, gt=0, description="transformer blocks")
    n_embd: int = Field(256, gt=0, description="hidden width")
    n_head: int = Field(4, gt=0, description="attention heads")
    context: int = Field(256, gt=0, description="maximum sequence length")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout probability of the new model")
    vocab_size: int | None = Field(None, gt=0, description="default: the tokenizer's size")


class ModelConfig(Strict):
    path: str = Field(
        "tailor-tiny",
        description="tailor-tiny, a local Hugging Face directory, a hub id, or a tailor run directory",
    )
    arch: ArchConfig | None = Field(None, description="initialise this architecture from scratch")
    tokenizer: str | None = Field(None, description="tokenizer location if not beside the model")
    trust_remote_code: bool = Field(
        False, description="allow a hub model's own Python code to run (only for models you trust)")
    revision: str | None = Field(None, description="hub model: a branch, tag or commit; default: main")


class SplitConfig(Strict):
    validation: float = Field(0.1, ge=0, description="fraction (<1) or count of examples")
    test: float = Field(0.1, ge=0, description="fraction (<1) or count of examples")


class DataConfig(Strict):
    train: list[str] = Field(default_factory=list, description="file(s) or folder(s)")
    validation: list[str] = Field(default_factory=list, description="file(s) or folder(s); default: split from train")
    test: list[str] = Field(default_factory=list, description="file(s) or folder(s); default: split from train")
    split: SplitConfig = SplitConfig()
    fields: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> column in your files, e.g. text: sentence"
    )
    max_length: int | None = Field(None, gt=0, description="tokens per example; default: the model's context")
    limit: int | None = Field(None, gt=0, description="use only the first N training records")
    leakage: Literal["error", "drop", "keep"] = Field(
        "error", description="validation/test examples that are also in your training files: stop (error), train "
        "without those copies (drop), or train on them with a warning (keep); recorded in data.json and the report")

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = dict(v)
            for key in ("train", "validation", "test"):
                if isinstance(v.get(key), str):
                    v[key] = [v[key]]
                elif v.get(key) is None and key in v:
                    v[key] = []
        return v


TaskType = Literal["lm", "classification", "regression", "qa", "chat", "multitask"]


class TaskConfig(Strict):
    type: TaskType = Field("lm", description="what the model learns to do")
    name: str | None = Field(None, description="task name (multitask: the head's name)")
    method: Literal["head", "generative"] = Field(
        "head", description="classification: a task layer, or the label words as the continuation"
    )
    labels: list[str] | None = Field(None, description="label names; default: from the training data")
    label_words: dict[str, str] | None = Field(None, description="generative: label -> text the model says")
    prompt: str | None = Field(None, description="generative template, e.g. 'Review: {text}\\nSentiment:'")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="classification loss weights: none, balanced (inverse frequency) or one per label")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="classification: share of the target spread over all labels")
    few_shot: int = Field(0, ge=0, description="baseline: k labelled examples in the prompt")
    loss_on: Literal["assistant", "last", "all"] = Field(
        "assistant", description="chat: which tokens are trained"
    )
    qa_mode: Literal["extractive", "generative"] = Field(
        "extractive", description="qa: a span of the context (span head), or a generated answer (chat-style)")
    stride: int = Field(64, gt=0, description="extractive QA: overlap of context windows, in tokens")
    weight: float = Field(1.0, gt=0, description="multitask: loss weight")
    data: DataConfig | None = Field(None, description="multitask: this sub-task's data (the keys of data:)")
    tasks: list[TaskConfig] = Field(default_factory=list, description="multitask: the sub-tasks (each with the keys of "
                                    "task:, and its own name and data)")
    sampling: Literal["proportional", "uniform", "temperature"] = Field(
        "proportional", description="multitask: which task each batch holds; by data size, uniform, or "
        "p ∝ size^(1/temperature)")
    temperature: float = Field(2.0, gt=0, description="multitask temperature sampling")

    @field_validator("labels", "label_words", mode="before")
    @classmethod
    def _labels_as_text(cls, v: Any) -> Any:
        """Labels may be numbers in YAML (labels: [0, 1]); the data checks compare them as text."""
        if isinstance(v, list):
            return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
        if isinstance(v, dict):
            return {str(k) if isinstance(k, int) and not isinstance(k, bool) else k: w for k, w in v.items()}
        return v

    @model_validator(mode="after")
    def _multitask(self) -> TaskConfig:
        if self.type == "multitask" and not self.tasks:
            raise ValueError("multitask needs a list of sub-tasks under task.tasks")
        return self


class LoraSettings(Strict):
    r: int = Field(8, gt=0, description="rank of the adapter matrices")
    alpha: float = Field(16, gt=0, description="scaling: the adapter's update is multiplied by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input; 0 keeps no extra copy of it")
    target_modules: list[str] | None = Field(None, description="default: per-architecture attention/MLP")


class StrategyConfig(Strict):
    name: Literal["full", "head", "top_k", "llrd", "gradual", "lora"] = Field(
        "full", description="which parameters train: all, task layers only, the top k blocks, all with layer-wise lr "
        "decay, gradual unfreezing, or LoRA adapters")
    k: int = Field(2, ge=0, description="top_k: number of top blocks that train")
    decay: float = Field(0.8, gt=0, le=1, description="llrd: lr multiplier per block of depth")
    head_lr_mult: float = Field(1.0, gt=0, description="task layers' lr = train.lr * this")
    unfreeze_every: int = Field(50, gt=0, description="gradual: steps between unfreezing blocks")
    trainable: list[str] | None = Field(
        None, description="head, generative tasks: parameter name fragments that train"
    )
    lora: LoraSettings = LoraSettings()


class EarlyStopping(Strict):
    patience: int | None = Field(None, gt=0, description="evaluations without improvement")
    min_delta: float = Field(0.0, ge=0, description="smallest change of train.metric that counts as improvement")


class TrainConfig(Strict):
    epochs: float = Field(3.0, gt=0, description="passes over the training data (fractions allowed)")
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimiser steps")
    batch_size: int = Field(16, gt=0, description="examples per forward pass")
    grad_accum: int = Field(1, gt=0, description="forward passes per optimiser step")
    lr: float | None = Field(None, gt=0, description="peak learning rate; default per task")
    optimizer: Literal["adamw", "sgd", "adafactor"] = Field("adamw", description="the optimiser")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay (not on biases and norms)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    schedule: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="learning rate after warm-up: linear or cosine decay to zero, or constant")
    warmup: float = Field(0.05, ge=0, description="fraction of steps (<1) or a step count")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient norm to this; empty: no clipping")
    dropout: float | None = Field(None, ge=0, lt=1, description="override the model's dropout")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast where the hardware runs it fast, else fp32")
    eval_every: int | None = Field(None, gt=0, description="steps; default: 4 times per run")
    log_every: int = Field(10, gt=0, description="steps between lines of metrics.jsonl")
    metric: str | None = Field(None, description="metric that picks the best checkpoint")
    early_stopping: EarlyStopping = EarlyStopping()
    save_every: int | None = Field(
        None, gt=0, description="checkpoint every N steps (for `tailor resume`); default: each evaluation, at most 100 apart"
    )
    max_bad_steps: int = Field(5, gt=0, description="stop after this many non-finite steps in a row (each is skipped)")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="also log to these trackers (the package must be installed)"
    )
    packing: bool = Field(True, description="lm: concatenate documents into full blocks")
    gradient_checkpointing: bool = Field(
        False, description="recompute each block's activations in the backward pass instead of keeping them: "
        "activation memory falls from one copy per block to about one block's, for ~30% more compute; "
        "for long sequences or large batches")
    weights: Literal["fp32", "bf16"] = Field(
        "fp32", description="dtype the weights, gradients and optimiser state are kept in. bf16 halves their memory "
        "and skips autocast's per-step weight casts (bf16 hardware only); updates below bf16's resolution "
        "(about 1/256 of a weight) are lost, so it suits larger learning rates, LoRA and short fine-tunes")
    effective_batch_size: int | None = Field(
        None, gt=0, description="examples per optimiser step; sets grad_accum = this / batch_size"
    )

    @field_validator("effective_batch_size")
    @classmethod
    def _effective_batch(cls, v: int | None, info: ValidationInfo) -> int | None:
        batch, accum = info.data.get("batch_size"), info.data.get("grad_accum")
        if v is None or batch is None or accum is None:  # batch_size/grad_accum errors are reported on their own
            return v
        if v % batch:
            lo = max(batch, v // batch * batch)
            raise ValueError(f"{v} is not a multiple of train.batch_size ({batch}); use {lo} or {lo + batch}")
        if accum != 1 and accum != v // batch:
            raise ValueError(f"disagrees with train.grad_accum {accum} (batch_size {batch} x {accum} = "
                             f"{batch * accum}); set only one of them")
        return v


class EvalConfig(Strict):
    baseline: bool = Field(True, description="also score the pre-trained model on the same split")
    batch_size: int = Field(32, gt=0, description="examples per forward pass when scoring")
    max_examples: int | None = Field(
        None, gt=0, description="cap on validation examples during training; chat / generative QA default: 64")
    max_new_tokens: int = Field(64, gt=0, description="generative evaluation")
    samples: int = Field(8, ge=0, description="sample generations shown in the report")


NAME_MAX = 100  # characters of a run name: runs/<name>-<nnn> must fit a file name (255 bytes)
TASK_LR = {"lm": 3e-4, "classification": 5e-4, "regression": 5e-4, "qa": 5e-4, "chat": 3e-4, "multitask": 5e-4}


class RunConfig(Strict):
    name: str = Field("run", max_length=NAME_MAX, description="runs/<name>-<nnn>/; default: the config file's name")
    output_dir: str = Field("runs", description="folder of the run directories (and registry.sqlite)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the split, initialisation, order and dropout")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    task: TaskConfig = TaskConfig()
    strategy: StrategyConfig = StrategyConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = dict(v)
            if isinstance(v.get("model"), str):
                v["model"] = {"path": v["model"]}
            if isinstance(v.get("task"), str):
                v["task"] = {"type": v["task"]}
            if isinstance(v.get("strategy"), str):
                v["strategy"] = {"name": v["strategy"]}
        return v

    @model_validator(mode="after")
    def _lora_needs_weights(self) -> RunConfig:
        if self.strategy.name == "lora" and self.model.arch is not None:  # the saved adapter would lack its base
            raise ValueError("strategy.name: lora adapts pre-trained weights, but model.arch builds a model "
                             "from scratch; use strategy full, or a pre-trained model.path")
        return self

    def resolved(self) -> RunConfig:
        """A copy with every per-task default filled in."""
        cfg = self.model_copy(deep=True)
        if cfg.train.lr is None:
            cfg.train.lr = TASK_LR[cfg.task.type]
        if cfg.train.metric is None:
            cfg.train.metric = DEFAULT_METRIC[cfg.task.type]
        if cfg.train.effective_batch_size:  # validated to be a multiple of batch_size
            cfg.train.grad_accum = cfg.train.effective_batch_size // cfg.train.batch_size
        generative = any(t.type == "chat" or (t.type == "qa" and t.qa_mode == "generative")
                         for t in [cfg.task, *cfg.task.tasks])
        if generative and cfg.eval.max_examples is None:  # validation generates text: keep it short
            cfg.eval.max_examples = 64
        return cfg

    def single_task(self, name: str) -> RunConfig:
        """Sub-task `name` of a multitask config as a run of its own, with the same model, strategy and training."""
        sub = next(t for t in self.task.tasks if t.name == name)
        data = (sub.data or DataConfig()).model_copy()  # a sub-task's data is required (multitask_problems)
        data.max_length = data.max_length or self.data.max_length
        metric = self.train.metric or ""
        train = self.train.model_copy(update={"metric": metric.partition("/")[2] if metric.startswith(f"{name}/") else None})
        raw = self.model_dump() | {"name": name, "data": data.model_dump(), "train": train.model_dump(),
                                   "task": sub.model_copy(update={"data": None, "weight": 1.0}).model_dump()}
        return RunConfig.model_validate(raw).resolved()


DEFAULT_METRIC = {
    "lm": "loss",
    "classification": "macro_f1",
    "regression": "mse",
    "qa": "f1",
    "chat": "token_f1",
    "multitask": "multitask_score",
}
NAME_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")


def multitask_problems(cfg: RunConfig) -> list[str]:
    """What a valid single-section config can still get wrong about sub-tasks, naming each key."""
    task, problems = cfg.task, []
    if task.type != "multitask":
        if task.tasks:
            problems.append(f"task.tasks: only task.type multitask has sub-tasks (task.type is {task.type!r})")
        if task.data is not None:
            problems.append("task.data: only the sub-tasks of a multitask run take their own data; use data: at the top")
        return problems
    if cfg.data.train:
        problems.append("data.train: a multitask run reads each sub-task's own data; move it to task.tasks.N.data.train")
    seen: dict[str, int] = {}
    for i, sub in enumerate(task.tasks):
        key = f"task.tasks.{i}"
        if not sub.name:
            problems.append(f"{key}.name: every sub-task needs a name (its head and metrics, e.g. NAME/accuracy, "
                            "are saved under it)")
        elif not NAME_CHARS.match(sub.name) or len(sub.name) > NAME_MAX:
            problems.append(f"{key}.name: use letters, digits, _ and - only, at most {NAME_MAX} (got {sub.name!r})")
        elif sub.name in seen:
            problems.append(f"{key}.name: {sub.name!r} is already the name of task.tasks.{seen[sub.name]}; "
                            "every sub-task needs its own name")
        else:
            seen[sub.name] = i
        if sub.type == "multitask":
            problems.append(f"{key}.type: a sub-task cannot itself be multitask")
        if sub.data is None or not sub.data.train:
            problems.append(f"{key}.data.train: sub-task {sub.name or i!r} has no data; give its training file(s), "
                            "e.g. data: {train: data/reviews.jsonl}")
        if sub.tasks:
            problems.append(f"{key}.tasks: a sub-task cannot have sub-tasks")
    metric = cfg.train.metric
    if metric and metric != "multitask_score" and metric.partition("/")[0] not in seen:
        problems.append(f"train.metric: {metric!r} is neither multitask_score nor NAME/metric with NAME one of "
                        f"the sub-tasks ({', '.join(seen) or 'none named'}), e.g. sentiment/macro_f1")
    return problems


def parse_overrides(items: list[str]) -> tuple[dict, list[str]]:
    """`a.b=v` strings -> nested dict (values parsed as YAML) and a list of problems."""
    out: dict = {}
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            problems.append(f"override '{item}': expected key=value, e.g. train.lr=3e-4")
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"override '{item}': '{part}' is not a section")
                break
        else:
            node[parts[-1]] = value
    return out, problems


def merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge; `extra` wins. A list item is addressed by its index (task.tasks.0.weight=2)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), list) and all(
                str(i).isdigit() and int(i) < len(out[k]) for i in v):  # else validation says it is not a list
            items = list(out[k])
            for i, item in v.items():
                old = items[int(i)]
                items[int(i)] = merge(old, item) if isinstance(old, dict) and isinstance(item, dict) else item
            out[k] = items
        elif isinstance(v, dict) and isinstance(out.get(k), str) and k in ("model", "task", "strategy"):
            key = {"model": "path", "task": "type", "strategy": "name"}[k]
            out[k] = merge({key: out[k]}, v)
        else:
            out[k] = v
    return out


def describe_error(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    kind, got = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; every key is listed in docs/config.md)"
    if kind == "literal_error":
        allowed = err["ctx"]["expected"].replace("'", "")
        return f"{loc}: {got!r} is not one of {allowed.replace(' or ', ', ')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        bound = f"{next(iter(err['ctx'].values())):g}"
        return f"{loc}: must be {op[kind]} {bound} (got {got!r})"
    if kind == "string_too_long":
        limit = err["ctx"]["max_length"]
        return f"{loc}: at most {limit} characters (got {len(got)}); it names a folder, so keep it short"
    msg = err["msg"].removeprefix("Value error, ")
    shown = repr(got) if len(repr(got)) <= 80 else repr(got)[:77] + "..."
    return f"{loc}: {msg} (got {shown})" if loc else msg


def validate(raw: dict, source: str = "<config>") -> RunConfig:
    """Validate a raw dict; every problem is collected into one ConfigError."""
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(source, [describe_error(err) for err in e.errors()]) from None
    problems = multitask_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def read_yaml(path: Path, source: str) -> dict:
    """A config file as a mapping; ConfigError for a missing, empty, invalid or ambiguous (repeated key) file."""
    try:
        raw = read_mapping_file(path)
    except YamlFileError as e:
        raise ConfigError(source, [str(e)]) from None
    if raw is None:
        raise ConfigError(source, ["the config is empty (nothing but blanks or comments); a run config needs at "
                                   "least model, task and data, e.g.\n    model: tailor-tiny\n    task: lm\n"
                                   "    data: {train: my_texts/}"])
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the top level must be a mapping of sections (model, data, task, ...)"])
    return raw


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read YAML (or nothing), apply dotted overrides, validate, fill per-task defaults."""
    raw: dict = {}
    source = str(path) if path else "<command line>"
    if path is not None:
        p = Path(path)
        raw = read_yaml(p, source)
        raw.setdefault("name", p.stem)
        _relative_paths(raw, p.parent)
    extra, problems = parse_overrides(list(overrides))
    if problems:
        raise ConfigError(source, problems)
    return validate(merge(raw, extra), source).resolved()


def _relative_paths(raw: dict, base: Path) -> None:
    """Data paths in a config file are relative to the file, if they exist there."""

    def fix(section: Any) -> None:
        if not isinstance(section, dict):
            return
        for key in ("train", "validation", "test"):
            vals = section.get(key)
            items = [vals] if isinstance(vals, str) else vals if isinstance(vals, list) else []
            fixed = [str(base / v) if isinstance(v, str) and (base / v).exists() and not Path(v).exists() else v for v in items]
            if items:
                section[key] = fixed[0] if isinstance(vals, str) else fixed

    fix(raw.get("data"))
    task = raw.get("task")
    if isinstance(task, dict):
        for sub in task.get("tasks") or []:
            if isinstance(sub, dict):
                fix(sub.get("data"))


def save_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
