"""Keypoint layouts used by Gaitway and the index maps between them.

Arrays of keypoints are shaped ``(..., J, C)`` with ``C`` = 2 (x, y), 3 (x, y, score) or 3 (x, y, z).
Image coordinates are pixels with x to the right and y downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Skeleton:
    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    #: (left, right) index pairs mirrored by a left/right swap
    lr_pairs: tuple[tuple[int, int], ...]

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, name: str) -> int:
        return self.joints.index(name)

    def flip_permutation(self) -> NDArray[np.intp]:
        """Index array that swaps every left joint with its right counterpart."""
        perm = np.arange(self.num_joints)
        for left, right in self.lr_pairs:
            perm[left], perm[right] = right, left
        return perm


# fmt: off
COCO17 = Skeleton(
    name="coco17",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    edges=(
        (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
        (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
    ),
    lr_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
)

HALPE26 = Skeleton(
    name="halpe26",
    joints=(
        *COCO17.joints,
        "head", "neck", "hip",
        "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe", "left_heel", "right_heel",
    ),
    edges=(
        *COCO17.edges,
        (17, 18), (18, 19), (15, 24), (15, 20), (15, 22), (16, 25), (16, 21), (16, 23),
    ),
    lr_pairs=(*COCO17.lr_pairs, (20, 21), (22, 23), (24, 25)),
)

H36M17 = Skeleton(
    name="h36m17",
    joints=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head",
        "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
    edges=(
        (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
        (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
    ),
    lr_pairs=((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)),
)

# fmt: on

SKELETONS = {s.name: s for s in (COCO17, HALPE26, H36M17)}
