"""Knowledge distillation (Hinton et al. 2015) as a backend-agnostic Keras 3 model."""

from __future__ import annotations

import keras
from keras import ops

from guitar_distill.common.config import Distill, Student
from guitar_distill.common.models import logits_model


def distillation_loss(
    labels, student_logits, teacher_logits, temperature: float, hard_weight: float, soft_weight: float
):
    """hard_weight * CE(labels, student) + soft_weight * T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean; labels
    are class indices or, for mixed photos, class-probability rows.

    The soft term is Keras' own (`keras.distillation.LogitsDistillation`, whose KL carries the T^2 factor
    that keeps its gradients on the scale of the hard term's as T grows); what Keras' Distiller lacks, and
    this class adds, is a teacher whose outputs were stored, and independent hard and soft weights.
    """
    student_logits = ops.cast(student_logits, "float32")
    # Class-probability rows (mixed photos, student.mix) or class indices.
    cross_entropy = (
        keras.losses.categorical_crossentropy
        if len(labels.shape) == len(student_logits.shape)
        else keras.losses.sparse_categorical_crossentropy
    )
    hard = ops.mean(cross_entropy(labels, student_logits, from_logits=True))
    # A KLDivergence instance, not the default "kl_divergence": Keras softmaxes the scaled logits (and applies
    # T^2) only for an instance; given the name, it takes the KL of the raw logits.
    kl = keras.distillation.LogitsDistillation(temperature=float(temperature), loss=keras.losses.KLDivergence())
    soft = kl.compute_loss(ops.cast(teacher_logits, "float32"), student_logits)
    return hard_weight * hard + soft_weight * soft


class Distiller(keras.Model):
    """Trains `student` against labels and a teacher's logits; `call` is the student's logits.

    Online: `teacher` is a frozen Keras model that sees the same (augmented) batch as the student,
    in inference mode. Offline: `teacher` is None and the targets carry the teacher's stored logits,
    y = (labels, teacher_logits). Both give the same loss on the same batch (for corrupted crops, when the stored
    outputs are the teacher's answers to them: distill.teacher_sees = "corrupted").
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | None,
        temperature: float,
        hard_weight: float,
        soft_weight: float,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.student = student
        self.student_logits = logits_model(student)
        self.teacher_logits = None
        if teacher is not None:
            teacher.trainable = False
            self.teacher_logits = logits_model(teacher)
            self.teacher_logits.trainable = False
        self.temperature, self.hard_weight, self.soft_weight = temperature, hard_weight, soft_weight

    def call(self, x, training=False):
        return self.student_logits(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y, (tuple, list)):
            y, teacher_logits = y
        elif self.teacher_logits is None:
            raise ValueError("offline distillation needs targets (labels, teacher_logits); no teacher model given")
        else:
            teacher_logits = self.teacher_logits(x, training=False)
        loss = distillation_loss(
            y, y_pred, ops.stop_gradient(teacher_logits), self.temperature, self.hard_weight, self.soft_weight
        )
        # Keras adds regularisation losses here too; the student has none, but keep the contract.
        return loss + ops.sum(self.losses) if self.losses else loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y[0] if isinstance(y, (tuple, list)) else y, y_pred, sample_weight)


def compiled_distiller(
    student: keras.Model,
    teacher: keras.Model | None,
    dcfg: Distill,
    scfg: Student,
    image_size: int,
    name: str = "nin_student_distilled",
) -> Distiller:
    """The preset's distiller (its `distill` table) around `student`, compiled with the student recipe and built."""
    from guitar_distill.common.recipe import recipe_optimizer

    distiller = Distiller(student, teacher, dcfg.temperature, dcfg.hard_weight, dcfg.soft_weight, name=name)
    distiller.compile(optimizer=recipe_optimizer(scfg), metrics=["accuracy"])
    distiller.build((None, image_size, image_size, 3))
    return distiller
