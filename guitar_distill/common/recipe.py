"""The recipe's optimiser, learning-rate schedule and loss, from a stage's table of a preset."""

from __future__ import annotations

import keras

from guitar_distill.common.errors import ToolkitError


def recipe_optimizer(cfg: dict) -> keras.optimizers.Optimizer:
    """The preset's optimiser and learning-rate schedule.

    optimizer "sgd" (momentum, Nesterov) or "adamw"; schedule "inverse_time" (the write-up's legacy
    Keras `decay`: lr / (1 + decay * iterations)) or "cosine" (linear warmup over `warmup_epochs`,
    then cosine to zero at `max_epochs`). Weight decay is decoupled and spares BN and biases.
    A non-zero `ema_momentum` keeps an exponential moving average of the weights in the optimiser
    (Keras' `use_ema`); fit_recipe validates and keeps the average (AveragedWeights).
    """
    lr = float(cfg["learning_rate"])
    schedule_name = cfg["schedule"]
    if schedule_name == "inverse_time":
        schedule = keras.optimizers.schedules.InverseTimeDecay(
            initial_learning_rate=lr, decay_steps=1, decay_rate=float(cfg["decay"])
        )
    elif schedule_name == "cosine":
        steps = int(cfg["steps_per_epoch"])
        warmup = int(round(float(cfg["warmup_epochs"]) * steps))
        total = int(cfg["max_epochs"]) * steps
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else lr,
            decay_steps=max(total - warmup, 1),
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    else:
        raise ToolkitError(f"unknown schedule {schedule_name!r} (inverse_time or cosine)")
    weight_decay = float(cfg["weight_decay"]) or None
    ema = float(cfg.get("ema_momentum", 0.0))
    averaging = {"use_ema": True, "ema_momentum": ema} if ema else {}
    name = cfg["optimizer"]
    if name == "sgd":
        opt = keras.optimizers.SGD(
            learning_rate=schedule,
            momentum=float(cfg["momentum"]),
            nesterov=bool(cfg["nesterov"]),
            weight_decay=weight_decay,
            **averaging,
        )
    elif name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay or 0.0, **averaging)
    else:
        raise ToolkitError(f"unknown optimizer {name!r} (sgd or adamw)")
    if weight_decay:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def recipe_loss(cfg: dict) -> keras.losses.Loss:
    """Sparse cross-entropy on probabilities, with the preset's label smoothing; on class-probability targets
    when the recipe mixes photos (`mix`: their targets are mixed rows, and so are validation's one-hot rows)."""
    smoothing = float(cfg["label_smoothing"])
    if cfg.get("mix", "none") != "none":
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    if not smoothing:
        return keras.losses.SparseCategoricalCrossentropy()
    return SmoothedSparseCrossentropy(smoothing)


def compile_recipe(model: keras.Model, cfg: dict) -> keras.Model:
    """Compile `model` with the recipe's optimiser and loss, tracking top-1 accuracy."""
    model.compile(optimizer=recipe_optimizer(cfg), loss=recipe_loss(cfg), metrics=["accuracy"])
    return model


@keras.saving.register_keras_serializable(package="guitar_distill")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Keras' label smoothing (CategoricalCrossentropy) for integer labels."""

    def __init__(self, label_smoothing: float, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), y_pred.shape[-1])
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
