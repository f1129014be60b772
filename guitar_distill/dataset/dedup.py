"""Group byte-identical and near-identical photos so that a group never straddles two splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guitar_distill.dataset.scan import Photo


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Duplicates:
    group: list[int]  # group id per photo (index of the group's first photo)
    exact_pairs: int  # pairs of byte-identical files
    exact_cross_class_pairs: int
    near_pairs: int  # pairs within the phash distance that are not byte-identical
    conflicting_groups: set[int]  # groups whose members carry different labels

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.group):
            out.setdefault(g, []).append(i)
        return out


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    bytes_ = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1)


def near_pairs(hashes: np.ndarray, max_distance: int, block: int = 2048) -> list[tuple[int, int]]:
    """All pairs i<j whose 64-bit hashes differ in at most `max_distance` bits."""
    pairs = []
    n = len(hashes)
    for start in range(0, n, block):
        rows = hashes[start : start + block]
        dist = _popcount64(rows[:, None] ^ hashes[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = ii < jj
        pairs.extend(zip(ii[keep].tolist(), jj[keep].tolist()))
    return pairs


def find_duplicates(photos: list[Photo], max_distance: int, max_thumb_diff: float) -> Duplicates:
    """Byte-identical files, plus near-identical ones: phash within `max_distance` bits *and*
    16x16 colour thumbnails within `max_thumb_diff` mean absolute difference (0..255).

    The thumbnail check matters on this data: catalogue shots of one guitar model in several
    finishes share a phash (it is computed on grey levels) but are different photos.
    """
    uf = _UnionFind(len(photos))
    by_sha: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        by_sha.setdefault(p.sha1, []).append(i)
    exact = cross = 0
    for members in by_sha.values():
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                exact += 1
                cross += photos[a].label != photos[b].label
                uf.union(a, b)
    near = 0
    if max_distance >= 0:
        hashes = np.array([p.phash for p in photos], dtype=np.uint64)
        thumbs = np.stack([np.frombuffer(p.thumb, dtype=np.uint8) for p in photos]).astype(np.int16)
        for a, b in near_pairs(hashes, max_distance):
            if photos[a].sha1 == photos[b].sha1:
                continue
            if np.abs(thumbs[a] - thumbs[b]).mean() <= max_thumb_diff:
                near += 1
                uf.union(a, b)
    group = [uf.find(i) for i in range(len(photos))]
    labels: dict[int, set[str]] = {}
    for i, g in enumerate(group):
        labels.setdefault(g, set()).add(photos[i].label)
    conflicting = {g for g, ls in labels.items() if len(ls) > 1}
    return Duplicates(group, exact, cross, near, conflicting)
