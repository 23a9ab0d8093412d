"""Marker sets: what each label of a motion-capture trial stands for, whatever the lab called it.

:func:`assign_roles` reads the labels of one trial and gives each a **role** on a **segment**:

* **pelvis**: ``ASIS``, ``PSIS``, ``SACR`` (stands in for both PSIS), ``HJC`` (hip joint-centre channel);
  iliac crest markers are plain members.
* **thigh**: ``KNEE`` (lateral femoral epicondyle), ``KNEE_MED`` (medial), ``KJC``, ``THI`` (Plug-in-Gait
  thigh wand); cluster markers (``LTHI1``, ``LTH2``, ``L_Thigh_3``, ``LTHAP``, ``L.Thigh.Top.Lateral`` ...)
  and the greater trochanter are plain members.
* **shank**: ``ANKLE`` (lateral malleolus), ``ANKLE_MED`` (medial), ``AJC``, ``TIB`` (Plug-in-Gait tibia
  wand); cluster markers (``LTIB1``, ``LSHN2``, ``LTIAD``, ``L.Shank.Top.Lateral`` ...), the fibular head and
  the tibial tuberosity are plain members.
* **foot**: ``HEEL`` (``LHEE``, ``L.Heel.Bottom``, ``LCAL``), ``TOE`` (``LTOE``, the second metatarsal head
  ``L.MT2``); other metatarsal and heel markers are plain members.
* **upper**: ``SHO``, ``ELB``, ``WRIST`` (``LWRA`` + ``LWRB``), ``HEAD`` (``LFHD``, ``RBHD`` ...), ``C7``,
  ``T10``, ``CLAV``, ``STRN``.

Labels are compared after removing a subject prefix (``Runner01:LASI``), separators and case, with the side
as a leading ``L``/``R``/``Left``/``Right`` or a trailing ``_L``/``.R``. The role keys are ``"L.KNEE"``,
``"R.ASIS"``, ``"SACR"`` ...; segments ``"pelvis"``, ``"L.thigh"``, ``"R.foot"``, ``"upper"``.

:func:`describe_marker_set` names the set a trial uses (RBDS, Plug-in-Gait lower or full body, a cluster model
with a static calibration trial, joint-centre channels); :data:`SUPPORTED_MARKER_SETS` is the text the errors
quote. :func:`model_output_angles` finds the lab software's own joint angles (Vicon Plug-in-Gait
``LKneeAngles``, long forms such as ``LeftKneeAngles``) among a C3D file's model outputs.

How joint centres are built from the roles is :func:`services.kinematics.mocap.lab_joint_centres`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "JOINT_CENTRE_ROLES",
    "SIDE_LETTER",
    "SUPPORTED_MARKER_SETS",
    "Roles",
    "assign_roles",
    "classify_label",
    "describe_marker_set",
    "model_output_angles",
    "normalise_label",
]

#: Motion side name -> the letter the role keys use
SIDE_LETTER = {"left": "L", "right": "R"}

#: the marker sets the errors name, with their key labels (left side; right side alike)
SUPPORTED_MARKER_SETS = (
    "RBDS / Qualisys (R.ASIS, L.PSIS, L.Thigh.Top.Lateral ..., with the static trial's L.Knee, "
    "L.Knee.Medial, L.Ankle, L.Ankle.Medial, L.MT2)",
    "Plug-in-Gait lower body (LASI RASI LPSI RPSI or SACR, LTHI LKNE LTIB LANK LHEE LTOE) and full body "
    "(+ C7 T10 CLAV STRN LSHO LELB LWRA LWRB LFHD LBHD)",
    "cluster models: thigh and shank clusters of 3+ markers in the run (LTHI1-4, LTH1.., LSHN1.., LTIB1-4, "
    "LTHAP/LTIAD ...) with the anatomical markers (LASI LPSI LKNE LKNM LANK LMED LHEE LTOE) in --static",
    "joint-centre channels (LHJC LKJC/LKNJC LAJC, in the run or in the static trial)",
)

#: ordered rules: (regex on the normalised label without its side, role or None for a plain member, segment)
_SIDED_RULES: tuple[tuple[str, str | None, str], ...] = (
    (r"ASI|ASIS", "ASIS", "pelvis"),
    (r"PSI|PSIS", "PSIS", "pelvis"),
    (r"ILIACCREST|ILIAC|ILC|ILCR|IC", None, "pelvis"),
    (r"HJC|HIPJC|HIPJOINTCENT(?:RE|ER)|HIPCENT(?:RE|ER)", "HJC", "pelvis"),
    (r"KJC|KNJC|KNEJC|KNEEJC|KNEEJOINTCENT(?:RE|ER)|KNEECENT(?:RE|ER)", "KJC", "thigh"),
    (r"AJC|ANJC|ANKJC|ANKLEJC|ANKLEJOINTCENT(?:RE|ER)|ANKLECENT(?:RE|ER)", "AJC", "shank"),
    (r"KNM|KNEM|KNEEM|KNEMED|KNEEMED|KNEEMEDIAL|MKNE|MKNEE|MFE|FME|MFC|MEPI", "KNEE_MED", "thigh"),
    (r"KNE|KNEE|KNEL|KNELAT|KNEELAT|KNEELATERAL|LFE|FLE|LFC|LEPI", "KNEE", "thigh"),
    (r"MED|MMAL|MMA|MM|ANKM|ANKMED|ANKLEM|ANKLEMED|ANKLEMEDIAL|MMALL|MAM", "ANKLE_MED", "shank"),
    (r"ANK|ANKLE|ANKL|ANKLAT|ANKLELAT|ANKLELATERAL|LMAL|LMA|LM|LMALL|MAL|MALL", "ANKLE", "shank"),
    (r"HEE|HEEL|HEELBOTTOM|HEELB|CAL|CALC", "HEEL", "foot"),
    (r"TOE|MT2|MET2|MH2|TOE2|SMH|D2M|MTH2", "TOE", "foot"),
    (r"THI|THIGH", "THI", "thigh"),
    (r"TIB|TIBIA|SHANK|SHN", "TIB", "shank"),
    (r"(?:THIGH|THI|FEMUR|FEM)[A-Z0-9]+|TH\d+[A-Z]*|TH[APLMD]{2}|GTR|GT|TROC|GTROC", None, "thigh"),
    (
        r"(?:TIBIA|TIB|SHANK|SHN|SHK)[A-Z0-9]+|(?:SK|TI|LEG)\d+[A-Z]*|TI[APLMD]{2}|HF|FH|FIB|FIBH|TT|TTB|TUB",
        None,
        "shank",
    ),
    (r"(?:HEEL|CAL|MT|MET|MH|MTH|TOE|FOOT|FMH|VMH|D\dM|P\dM)[A-Z0-9]*", None, "foot"),
    (r"SHO|SHOULDER|ACR", "SHO", "upper"),
    (r"ELB|ELBOW", "ELB", "upper"),
    (r"WRA|WRB|WRI|WRIST", "WRIST", "upper"),
    (r"FHD|BHD|HEAD", "HEAD", "upper"),
)
_SIDED = tuple((re.compile(pattern), role, segment) for pattern, role, segment in _SIDED_RULES)

#: labels without a side: normalised label -> (role, segment)
_UNSIDED = {
    "SACR": ("SACR", "pelvis"), "SACRUM": ("SACR", "pelvis"), "SAC": ("SACR", "pelvis"),
    "C7": ("C7", "upper"), "CV7": ("C7", "upper"), "T10": ("T10", "upper"), "TV10": ("T10", "upper"),
    "CLAV": ("CLAV", "upper"), "STRN": ("STRN", "upper"), "STERNUM": ("STRN", "upper"),
}  # fmt: skip

#: roles several labels share (their positions are averaged)
_LIST_ROLES = frozenset({"WRIST", "HEAD"})
#: roles that are computed points of the lab's model, not skin markers: never part of a tracking cluster
JOINT_CENTRE_ROLES = frozenset({"HJC", "KJC", "AJC"})

_SUFFIX_SIDE = re.compile(r"^(.*?)[\s._\-](L|R|LEFT|RIGHT)$", re.IGNORECASE)


def normalise_label(label: str) -> str:
    """``"Runner01:L_Knee.Medial"`` -> ``"LKNEEMEDIAL"``: the subject prefix dropped, upper case, letters and
    digits only."""
    name = label.rsplit(":", 1)[-1]
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def _side_and_body(label: str) -> list[tuple[str | None, str]]:
    """Candidate (side letter, normalised body) readings of a label, most likely first."""
    name = label.rsplit(":", 1)[-1].strip()
    out: list[tuple[str | None, str]] = []
    m = _SUFFIX_SIDE.match(name)
    if m:
        out.append((m.group(2)[0].upper(), normalise_label(m.group(1))))
    n = normalise_label(name)
    for word, letter in (("LEFT", "L"), ("RIGHT", "R")):
        if n.startswith(word) and len(n) > len(word):
            out.append((letter, n[len(word) :]))
        if n.endswith(word) and len(n) > len(word):
            out.append((letter, n[: -len(word)]))
    if len(n) > 1 and n[0] in "LR":
        out.append((n[0], n[1:]))
    out.append((None, n))
    return out


def classify_label(label: str) -> tuple[str, str | None] | None:
    """``(segment key, role key or None)`` of one label, or None when it means nothing here, with the keys
    :class:`Roles` uses: e.g. ``"LKNE"`` -> ``("L.thigh",
    "L.KNEE")``, ``"LTHI2"`` -> ``("L.thigh", None)``, ``"SACR"`` -> ``("pelvis", "SACR")``."""
    for side, body in _side_and_body(label):
        if side is None:
            hit = _UNSIDED.get(body)
            if hit is not None:
                return hit[1], hit[0]
            continue
        for pattern, role, segment in _SIDED:
            if pattern.fullmatch(body):
                seg_key = segment if segment in ("pelvis", "upper") else f"{side}.{segment}"
                return seg_key, (f"{side}.{role}" if role else None)
    return None


@dataclass(frozen=True)
class Roles:
    """What the labels of one trial stand for (see the module docstring for the keys)."""

    single: dict[str, str]  # role key ("L.KNEE", "SACR") -> label
    lists: dict[str, tuple[str, ...]]  # list role key ("L.WRIST", "HEAD") -> labels
    segments: dict[str, tuple[str, ...]]  # segment key ("pelvis", "L.thigh") -> every member label
    unused: tuple[str, ...]  # labels with no meaning here
    duplicates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> the labels it also matched

    def get(self, key: str) -> str | None:
        return self.single.get(key)

    def members(self, segment: str) -> tuple[str, ...]:
        return self.segments.get(segment, ())


def assign_roles(labels: Iterable[str], valid: Mapping[str, int] | None = None) -> Roles:
    """The roles of a trial's labels. ``valid`` (label -> number of frames with a position) breaks ties
    when several labels claim one role: the most visible wins (the others are listed in ``duplicates``)."""
    single: dict[str, list[str]] = {}
    lists: dict[str, list[str]] = {}
    segments: dict[str, list[str]] = {}
    unused: list[str] = []
    for label in labels:
        hit = classify_label(label)
        if hit is None:
            unused.append(label)
            continue
        segment, role = hit
        segments.setdefault(segment, []).append(label)
        if role is None:
            continue
        base = role.split(".")[-1]
        if base == "HEAD":  # one head, whichever side its markers sit on
            role = base
        (lists if base in _LIST_ROLES else single).setdefault(role, []).append(label)
    counts = valid or {}
    chosen = {
        role: max(labs, key=lambda lab: (counts.get(lab, 0), -labs.index(lab)))
        for role, labs in single.items()
    }
    duplicates = {
        role: tuple(lab for lab in labs if lab != chosen[role])
        for role, labs in single.items()
        if len(labs) > 1
    }
    # a duplicate of a role is not a cluster member either (two labels of one marker would weigh it twice)
    dropped = {lab for labs in duplicates.values() for lab in labs}
    return Roles(
        single=chosen,
        lists={k: tuple(v) for k, v in lists.items()},
        segments={k: tuple(lab for lab in v if lab not in dropped) for k, v in segments.items()},
        unused=tuple(unused),
        duplicates=duplicates,
    )


def _has(roles: Roles, *keys: str) -> bool:
    return all(roles.get(k) is not None for k in keys)


def describe_marker_set(run: Roles, static: Roles | None) -> str:
    """A short name of the marker set of a trial (and its static trial): ``"RBDS"``, ``"Plug-in-Gait full
    body"``, ``"Plug-in-Gait lower body"``, ``"cluster model with static calibration"``, ``"joint-centre
    channels"``, or ``"custom"`` when it is none of these but the roles suffice."""
    labels = set(run.single.values()) | {lab for v in run.segments.values() for lab in v}
    if "R.ASIS" in labels and any(".Thigh." in lab for lab in labels):
        return "RBDS"
    sides = ("L", "R")
    pig = all(
        _has(run, f"{s}.ASIS", f"{s}.KNEE", f"{s}.THI", f"{s}.TIB", f"{s}.ANKLE", f"{s}.HEEL", f"{s}.TOE")
        for s in sides
    ) and (all(_has(run, f"{s}.PSIS") for s in sides) or _has(run, "SACR"))
    if pig:
        upper = _has(run, "C7", "CLAV") and all(_has(run, f"{s}.SHO", f"{s}.ELB") for s in sides)
        return "Plug-in-Gait full body" if upper else "Plug-in-Gait lower body"
    if all(_has(run, f"{s}.KJC", f"{s}.AJC") for s in sides):
        return "joint-centre channels"
    role_labels = set(run.single.values())
    clusters = all(
        len([m for m in run.members(f"{s}.{seg}") if m not in role_labels]) >= 3
        for s in sides
        for seg in ("thigh", "shank")
    )
    if clusters and static is not None:
        jc = all(_has(static, f"{s}.KJC", f"{s}.AJC") for s in sides)
        return (
            "cluster model with static joint-centre channels"
            if jc
            else "cluster model with static calibration"
        )
    return "custom"


_ANGLE_OUTPUT = re.compile(r"^(L|R|LEFT|RIGHT)(HIP|KNEE|ANKLE)(?:JOINT)?ANGLES?$")


def model_output_angles(labels: Iterable[str]) -> dict[str, str]:
    """The lab software's joint-angle outputs among ``labels``: ``"knee_left"`` -> ``"LKneeAngles"`` (Vicon
    Plug-in-Gait names, long forms such as ``LeftKneeAngles``, a subject prefix allowed). Plug-in-Gait stores
    (sagittal, frontal, transverse) in the point's (X, Y, Z): flexion, flexion and dorsiflexion positive in
    X."""
    out: dict[str, str] = {}
    for label in labels:
        m = _ANGLE_OUTPUT.match(normalise_label(label))
        if m is None:
            continue
        side = "left" if m.group(1).startswith("L") else "right"
        out.setdefault(f"{m.group(2).lower()}_{side}", label)
    return out
