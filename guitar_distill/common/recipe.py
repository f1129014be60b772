"""The recipe's optimiser, learning-rate schedule and loss, from a stage's table of a preset."""

from __future__ import annotations

import keras

from guitar_distill.common.config import Recipe


def recipe_schedule(recipe: Recipe) -> keras.optimizers.schedules.LearningRateSchedule:
    """schedule "inverse_time" (the write-up's legacy Keras `decay`: lr / (1 + decay * iterations)) or
    "cosine" (linear warmup over `warmup_epochs`, then cosine to zero at `max_epochs`)."""
    lr = recipe.learning_rate
    if recipe.schedule == "inverse_time":
        return keras.optimizers.schedules.InverseTimeDecay(
            initial_learning_rate=lr, decay_steps=1, decay_rate=recipe.decay
        )
    warmup = int(round(recipe.warmup_epochs * recipe.steps_per_epoch))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else lr,
        decay_steps=max(recipe.max_epochs * recipe.steps_per_epoch - warmup, 1),
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )


def recipe_optimizer(recipe: Recipe, schedule=None) -> keras.optimizers.Optimizer:
    """The preset's optimiser on `recipe_schedule` (or `schedule`): "sgd" (momentum, Nesterov) or "adamw".

    Weight decay is decoupled and spares BN and biases. A non-zero `ema_momentum` keeps an exponential
    moving average of the weights in the optimiser (Keras' `use_ema`); fit_recipe validates and keeps
    the average (AveragedWeights).
    """
    common = {"learning_rate": schedule or recipe_schedule(recipe), "weight_decay": recipe.weight_decay or None}
    if recipe.ema_momentum:
        common.update(use_ema=True, ema_momentum=recipe.ema_momentum)
    if recipe.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=recipe.momentum, nesterov=recipe.nesterov, **common)
    else:
        opt = keras.optimizers.AdamW(**{**common, "weight_decay": recipe.weight_decay})
    if recipe.weight_decay:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def recipe_loss(recipe: Recipe) -> keras.losses.Loss:
    """Sparse cross-entropy on probabilities, with the preset's label smoothing; on class-probability targets
    when the recipe mixes photos (`mix`: their targets are mixed rows, and so are validation's one-hot rows)."""
    if recipe.mix != "none":
        return keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    if not recipe.label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy()
    return SmoothedSparseCrossentropy(recipe.label_smoothing)


def compile_recipe(model: keras.Model, recipe: Recipe) -> keras.Model:
    """Compile `model` with the recipe's optimiser and loss, tracking top-1 accuracy."""
    model.compile(optimizer=recipe_optimizer(recipe), loss=recipe_loss(recipe), metrics=["accuracy"])
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
