"""The release stays true to its records and its code: the model card is made from the records (known figures
land where they belong), and the bundle is made from guitar_distill/edge; the
committed card is exactly what the committed records render to."""
import re
from pathlib import Path

import numpy as np

from guitar_distill.common.artifacts import read_json
from guitar_distill.common.config import PROJECT_ROOT
from guitar_distill.export.model_card import confused_pairs, load_records, render_model_card

MODELS = PROJECT_ROOT / "models"


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    confusion = np.array([[5, 3, 0], [1, 7, 4], [0, 4, 2]])
    assert confused_pairs(confusion, ["a", "b", "c"], top=3) == [
        ("b", "c", 4, 4 / 12), ("c", "b", 4, 4 / 6), ("a", "b", 3, 3 / 8)]


def test_committed_card_is_what_the_release_records_render_to():
    card = (MODELS / "MODEL_CARD.md").read_text()
    assert card == render_model_card(load_records(MODELS)), "models/MODEL_CARD.md drifted: python -m export.model_card"
    assert (MODELS / "student" / "guitar-student" / "MODEL_CARD.md").read_text() == card


def test_card_figures_equal_the_training_records():
    card = (MODELS / "MODEL_CARD.md").read_text()
    student = read_json(MODELS / "training" / "student" / "metrics.json")
    baseline = read_json(MODELS / "training" / "baseline" / "metrics.json")
    keras_row = re.search(r"^\| student \| keras \| ([0-9.]+) \|", card, flags=re.M)
    assert keras_row and float(keras_row.group(1)) == round(student["test_accuracy"], 3)
    assert f"| baseline (no distillation) | keras | {baseline['test_accuracy']:.3f} |" in card
    bundle = read_json(MODELS / "student" / "guitar-student" / "model.json")
    assert f"{bundle['network']['parameters']:,} parameters" in card
    for label in (MODELS / "student" / "guitar-student" / "labels.txt").read_text().split():
        assert re.search(rf"^\| {label} \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| \d+ \|$", card, flags=re.M), label


def test_released_bundle_matches_the_code_that_makes_it():
    import guitar_distill.edge as edge

    code = Path(edge.__file__).parent
    bundle = MODELS / "student" / "guitar-student"
    for copy, source in (("predict.py", "predict.py"), ("images.py", "images.py"),
                         ("index.html", "web/index.html"), ("app.js", "web/app.js")):
        assert (bundle / copy).read_bytes() == (code / source).read_bytes(), \
            f"{bundle / copy} differs from {code / source}: make release rebuilds the bundle from the code"
