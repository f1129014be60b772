"""Seeded, group-aware, stratified splits: a duplicate group always lands in one split."""

from __future__ import annotations

import numpy as np

from guitar_distill.common.manifest import SPLITS


def split_groups(groups_by_class: dict[str, list[list[int]]], spec: dict, seed: int) -> dict[int, str]:
    """Assign each photo index to a split.

    `groups_by_class[label]` lists the duplicate groups (photo indices) of that class, in a stable
    order. `spec` is either {"counts": {"train": n, "val": n, "test": n}} (sample that many images
    per class, as the write-up did) or {"fractions": {"val": f, "test": f}} (everything, the rest
    is train). Photos left out of a counts split are not assigned.
    """
    assignment: dict[int, str] = {}
    for class_index, label in enumerate(sorted(groups_by_class)):
        groups = groups_by_class[label]
        rng = np.random.default_rng([seed, class_index])
        order = rng.permutation(len(groups))
        total = sum(len(g) for g in groups)
        if "counts" in spec:
            quota = {s: int(spec["counts"].get(s, 0)) for s in SPLITS}
        else:
            fractions = spec["fractions"]
            quota = {s: int(round(total * float(fractions.get(s, 0.0)))) for s in ("val", "test")}
            quota["train"] = total  # whatever is left
        # Held-out splits first, so that they are filled exactly and train takes the rest.
        fill_order = ("val", "test", "train")
        filled = dict.fromkeys(SPLITS, 0)
        for g in order:
            members = groups[g]
            for split in fill_order:
                if filled[split] + len(members) <= quota[split]:
                    filled[split] += len(members)
                    for i in members:
                        assignment[i] = split
                    break
    return assignment


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of up to `per_class` photos of every class, seeded, in split order."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))
