"""Read a whole number: one image of several handwritten digits becomes its digits, left to right, each framed
exactly as a single digit is (mnistlab.images.to_mnist), and each model's reading of them. See docs/numbers.md.

    layout = find_layout(grey)                 # no model needed: the marks, and every candidate piece, framed
    reading = read_layout(layout, model)       # one model's number: the cuts it is surest of, its digits' scores
    readings = read_number(layout, models)     # every model: the first one cuts, all read its digits
    digits = find_digits(grey, model)          # find and read in one call: [Digit(label, score, box, x28), ...]

Marks (8-connected ink) are grouped into digits, specks and dashes dropped, anything but one line of digits refused;
a wide group gets candidate cuts, and the model chooses among them (segmentation by recognition). The settings
below were chosen on numbers of MNIST training digits (python -m benchmarks.whole_numbers --split train).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from mnistlab.datasets import INK_THRESHOLD
from mnistlab.errors import ProjectError
from mnistlab.images import read_as, to_mnist

MAX_DIGITS = 30  # a number longer than this is a page of text or a textured photo, not a number
WORK_PIXELS = 4_000_000  # a larger image is averaged down by a whole factor first: the cost stays bounded
MAX_INK = 0.5  # more of the image than this is ink: not digits on paper
MIN_HEIGHT = 8  # pixels: the smallest digit read (MNIST's digits are 20 tall, UCI's 8)
NOISE = 0.08  # marks smaller than this fraction of the tallest mark, both ways, are noise
RULE_WIDTH, RULE_HEIGHT = 1.5, 0.25  # a mark wider than 1.5 and lower than 0.25 tallest marks is a rule
MERGE_OVERLAP, MERGE_GAP = 0.5, 0.3  # horizontal overlap of the narrower, vertical gap in tallest marks
SPECK = 0.35  # a group smaller than this, both ways, than the number's digit height is a speck or a dot
FLAT, END = 0.4, 0.35  # a group lower than 0.4 digit heights: a stroke of its neighbour's top or bottom 35%, or a dash
BLOB = 1.25  # a group hardly taller than its strokes are thick (the widest inscribed disc) is a dot, a dash or a smudge
SPLIT_ASPECT = 0.6  # a group wider than this times its height may be several digits (a 1 touching a 4): cuts are tried
# The cheapest cuts kept: CUT_BASE, and CUTS_PER_HEIGHT more per digit height of the group's width past SPLIT_ASPECT.
CUT_BASE, CUTS_PER_HEIGHT = 2, 8
CUT_STEP, EDGE = 0.08, 0.12  # candidate cuts start every 0.08 heights, 0.12 heights in from the group's edges
BAND = 0.25  # a seam strays at most 0.25 heights from its column
MAX_PIECE = 1.6  # a piece wider than 1.6 digit heights is not tried as one digit
SLIVER = 0.08  # a cut piece's parts with less than this share of its ink are the neighbour's stroke ends
SHORT, SHORT_COST = 0.6, 8.0  # a piece lower than 0.6 of its group is a sliver: it costs 8 per height short, in log
# Each digit's (0 to 9) log(width/height) in MNIST training digits as a log-normal, weighted and capped (log units).
ASPECT_MU = (-0.11, -0.92, -0.05, -0.22, -0.22, -0.05, -0.36, -0.22, -0.29, -0.36)
ASPECT_SD = (0.2, 0.48, 0.2, 0.22, 0.26, 0.29, 0.2, 0.26, 0.23, 0.19)
SHAPE_WEIGHT, SHAPE_CAP = 0.1, 8.0
STROKE_COST = 0.05  # per stroke a kept cut crosses, in log units
DECISION_SCALE = 3.0  # decision scores (SVC: votes, ties broken within 1/3) -> a softmax confidence


@dataclass
class Group:
    """One group of marks: its boundaries (0, the cuts, the right edge) and the piece between each pair."""

    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive), in the image's pixels
    bounds: int  # boundaries 0..bounds
    spans: dict[tuple[int, int], int]  # (i, j) -> the index of the piece from boundary i to boundary j
    strokes: list[int]  # per boundary, how many strokes its cut crosses (0 for the group's edges)


@dataclass
class Layout:
    """Where an image's marks are and every candidate piece, framed: what each model then reads."""

    shape: tuple[int, int]  # the image's height and width
    groups: list[Group]
    boxes: list[tuple[int, int, int, int]]  # per piece: top, left, bottom, right of its ink, image pixels
    inputs: np.ndarray  # per piece: the (28, 28) model input; zeros for a piece without ink
    reference: np.ndarray  # per piece: the height of its group (pieces much lower are slivers), image pixels
    empty: np.ndarray  # per piece: holds no ink (it reads as nothing)
    ms: float = 0.0  # how long finding it took


@dataclass
class Digit:
    label: str
    score: float  # the model's score for the label: a probability, or a decision score
    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive), in the image's pixels
    x28: np.ndarray = field(repr=False)


@dataclass
class Reading:
    """One model's reading of a layout."""

    name: str
    family: str
    score_kind: str
    digits: list[Digit]
    pieces: list[int]  # which of the layout's pieces the digits are
    ms: float  # the model's own time: scoring the pieces (and choosing the cuts, for the model that cut)

    @property
    def number(self) -> str:
        return "".join(d.label for d in self.digits)


# ---------------------------------------------------------------- reading
def find_digits(grey: np.ndarray, predictor=None) -> list[Digit]:
    """An image's digits, left to right, cut and read by ``predictor`` (None: cut by the shape prior alone, every
    digit labelled "?"). ProjectError when there is nothing digit-like to read."""
    return read_layout(find_layout(grey), predictor).digits


def read_image(source, name: str | None = None) -> Layout:
    """The layout of a path's or bytes' image (read as predict.py reads one); ProjectError naming it."""
    return read_as(find_layout, source, name, ProjectError)


def read_number(layout: Layout, predictors: list) -> list[Reading]:
    """Every model's reading of the same digits: the first model chooses the cuts, the others read the pieces it
    kept (a slow classical model could not score every candidate piece in time for the page)."""
    if not predictors:
        return []
    first = read_layout(layout, predictors[0])
    return [first, *(read_layout(layout, p, first.pieces) for p in predictors[1:])]


def read_layout(layout: Layout, predictor=None, pieces: list[int] | None = None) -> Reading:
    """``predictor``'s reading: of the given ``pieces``, or else of the cuts it is surest of (it scores every
    candidate piece; docs/numbers.md)."""
    start = time.perf_counter()
    if predictor is None:  # no model: the shape prior alone chooses the cuts
        name, family, kind, classes = "shape prior", "none", "none", ["?"]
    else:
        name, family, kind, classes = predictor.name, predictor.family, predictor.score_kind, predictor.classes
    if pieces is None:
        scores = predictor.predict(layout.inputs) if predictor else np.ones((len(layout.inputs), 1), np.float32)
        pieces = choose(layout, scores, kind if predictor else "probability", classes)
        scores = scores[pieces]
    else:
        scores = predictor.predict(layout.inputs[pieces]) if pieces else []
    digits = []
    for k, row in zip(pieces, scores, strict=True):
        best = int(np.argmax(row))
        digits.append(Digit(classes[best], float(row[best]), layout.boxes[k], layout.inputs[k]))
    return Reading(name, family, kind, digits, pieces, 1000 * (time.perf_counter() - start))


def choose(layout: Layout, scores: np.ndarray, kind: str, classes: list) -> list[int]:
    """The pieces holding ink on the best path through each group, left to right: the model's log confidence
    plus the shape priors of each piece (a sliver: SHORT; class_shape)."""
    boxes = np.array(layout.boxes, dtype=np.float64).reshape(-1, 4)
    short = -SHORT_COST * np.maximum(0.0, SHORT - (boxes[:, 2] - boxes[:, 0]) / np.maximum(layout.reference, 1))
    prior = short + class_shape(boxes, scores.argmax(axis=1), classes)
    confidence = confidences(scores, kind)
    confidence /= max(confidence.max(), 1e-6)  # sure = as sure as this model gets (label smoothing caps it near 0.9)
    value = np.where(layout.empty, 0.0, np.log(np.maximum(confidence, 1e-6)) + prior)  # empty: neither cost nor bonus
    return [k for group in layout.groups for k in best_path(group, value) if not layout.empty[k]]


def class_shape(boxes: np.ndarray, best: np.ndarray, classes: list) -> np.ndarray:
    """Per piece, in log units: how unusual its width/height is for the digit it is read as (ASPECT); 0 for a
    model of other classes. A piece read as an 8 but wider than tall is more likely two digits."""
    if list(map(str, classes)) != list("0123456789"):
        return np.zeros(len(boxes))
    mu, sd = np.array(ASPECT_MU)[best], np.array(ASPECT_SD)[best]
    aspect = np.log(np.maximum(boxes[:, 3] - boxes[:, 1], 1) / np.maximum(boxes[:, 2] - boxes[:, 0], 1))
    return -SHAPE_WEIGHT * np.minimum(((aspect - mu) / sd) ** 2 / 2, SHAPE_CAP)


def confidences(scores: np.ndarray, kind: str) -> np.ndarray:
    """How sure a model is of each piece's best class: its probability, or a softmax of decision scores."""
    scores = np.asarray(scores, dtype=np.float64)
    if kind == "probability":
        return scores.max(axis=1)
    z = DECISION_SCALE * (scores - scores.max(axis=1, keepdims=True))
    return 1.0 / np.exp(z).sum(axis=1)


def best_path(group: Group, value: np.ndarray) -> list[int]:
    """The pieces from the group's left edge to its right edge whose values, less STROKE_COST for each stroke the
    cuts between them cross, sum highest (dynamic programming)."""
    best = [0.0] + [-math.inf] * group.bounds
    back = [(0, -1)] * (group.bounds + 1)
    for (i, j), k in sorted(group.spans.items(), key=lambda item: item[0][1]):
        total = best[i] + value[k] - STROKE_COST * group.strokes[j]  # the cut after this piece, if any
        if total > best[j]:
            best[j], back[j] = total, (i, k)
    path, j = [], group.bounds
    while j > 0:
        j, k = back[j]
        path.append(k)
    return path[::-1]


# ---------------------------------------------------------------- finding the marks
def ink_of(grey: np.ndarray) -> np.ndarray:
    """The ink as to_mnist sees it (light on dark, the paper's level removed, scaled to 1): the same steps, so
    that a lone digit is cropped and scaled exactly as read_digit does."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 2:
        raise ProjectError(f"not a 2-D image of at least 2x2 pixels (shape {grey.shape})")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:
        grey, border = 1.0 - grey, 1.0 - border
    ink = np.clip(grey - np.median(border), 0.0, None)
    if ink.max() < 0.05:
        raise ProjectError("no ink found: the image is blank or has no contrast")
    return ink / ink.max()


def work_scale(grey: np.ndarray) -> tuple[np.ndarray, int]:
    """The image averaged down by a whole factor when it has over WORK_PIXELS (a phone photo), and the factor."""
    if grey.size <= WORK_PIXELS:
        return grey, 1
    factor = math.ceil(math.sqrt(grey.size / WORK_PIXELS))
    h, w = grey.shape[0] // factor, grey.shape[1] // factor
    return grey[: h * factor, : w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3)), factor


def find_layout(grey: np.ndarray) -> Layout:
    """Every group of marks in ``grey`` and its candidate pieces, framed; ProjectError when none is digit-like."""
    start = time.perf_counter()
    small, factor = work_scale(np.asarray(grey, dtype=np.float32))
    ink = ink_of(small)
    core = ink > INK_THRESHOLD
    if core.mean() > MAX_INK:
        raise ProjectError(f"{100 * core.mean():.0f}% of the image is ink: not digits on paper")
    labels, _ = ndimage.label(core, structure=np.ones((3, 3)))
    boxes = [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndimage.find_objects(labels)]
    members, height = group_marks(boxes, np.bincount(labels.ravel())[1:], core)
    owner = np.zeros(len(boxes) + 1, dtype=np.int32)  # mark label -> its group's number (1...), 0: dropped
    for g, (_, marks) in enumerate(members, 1):
        owner[np.array(marks) + 1] = g
    owner = owner[labels]
    groups = [
        (box, *cut_group(own_ink(owner, core, ink, box, g), box, height)) for g, (box, _) in enumerate(members, 1)
    ]
    layout = build_layout(groups, factor, np.shape(grey))
    layout.ms = 1000 * (time.perf_counter() - start)
    return layout


def group_marks(boxes: list, sizes: np.ndarray, core: np.ndarray) -> tuple[list, float]:
    """The [box, marks] of each digit-like group, left to right, and the number's digit height (pixels);
    ProjectError when there is no one number to read."""
    tallest = max(b[2] - b[0] for b in boxes)
    keep = [
        m
        for m, (top, left, bottom, right) in enumerate(boxes)
        if max(bottom - top, right - left) >= NOISE * tallest  # not noise
        and not (right - left > RULE_WIDTH * tallest and bottom - top < RULE_HEIGHT * tallest)  # nor a rule
    ]
    groups: list[list] = []  # [box, marks]
    for m in sorted(keep, key=lambda m: -sizes[m]):  # the largest first: they are the digits' bodies
        match = next((g for g in groups if belongs(boxes[m], g[0], MERGE_GAP * tallest)), None)
        if match is None:
            groups.append([boxes[m], [m]])
        else:
            match[0], match[1] = join(match[0], boxes[m]), [*match[1], m]
    groups = thick(merge_groups(groups, MERGE_GAP * tallest), core)
    if not groups:
        raise ProjectError("nothing digit-like: only dots, dashes or smudges")
    heights = sorted(box[2] - box[0] for box, _ in groups)
    height = float(np.median([h for h in heights if h >= 0.5 * heights[-1]]))
    if height < MIN_HEIGHT:
        raise ProjectError(f"nothing digit-like: the marks are at most {heights[-1]} pixels tall")
    groups = attach_strokes([g for g in groups if max(g[0][2] - g[0][0], g[0][3] - g[0][1]) >= SPECK * height], height)
    check_one_number(groups)
    return sorted(groups, key=lambda g: g[0][1] + g[0][3]), height


def join(a, b) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def belongs(box, group_box, max_gap: float) -> bool:
    """Whether a mark is another stroke of a group's digit: horizontal overlap, vertically next to it."""
    overlap = min(box[3], group_box[3]) - max(box[1], group_box[1])
    narrower = min(box[3] - box[1], group_box[3] - group_box[1])
    gap = max(box[0], group_box[0]) - min(box[2], group_box[2])
    return overlap >= MERGE_OVERLAP * narrower and gap <= max_gap


def merge_groups(groups: list, max_gap: float) -> list:
    """Groups that grew into each other's columns are one digit too: merged until none does."""
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            if belongs(groups[b][0], groups[a][0], max_gap):
                groups[a] = [join(groups[a][0], groups[b][0]), groups[a][1] + groups[b][1]]
                del groups[b]
                return merge_groups(groups, max_gap)
    return groups


def attach_strokes(groups: list, height: float) -> list:
    """A flat group (lower than FLAT digit heights) beside a digit's top or bottom is that digit's lifted stroke
    (a 5's bar); anywhere else it is a dash, not a digit."""
    digits = [g for g in groups if g[0][2] - g[0][0] >= FLAT * height]
    if not digits:
        raise ProjectError("nothing digit-like: only flat strokes (dashes, lines)")
    for box, marks in (g for g in groups if g[0][2] - g[0][0] < FLAT * height):
        gaps = [max(box[1], d[0][1]) - min(box[3], d[0][3]) for d in digits]  # horizontal; < 0: overlap
        near = int(np.argmin(gaps))
        top, _, bottom, _ = digits[near][0]
        centre = (box[0] + box[2]) / 2
        at_an_end = centre < top + END * (bottom - top) or centre > bottom - END * (bottom - top)
        if gaps[near] <= MERGE_GAP * height and at_an_end:
            digits[near] = [join(digits[near][0], box), digits[near][1] + marks]
    return digits


def thick(groups: list, core: np.ndarray) -> list:
    """The groups that are lines, not blobs: a dot, a dash or a smudge is hardly taller than its own thickness
    (twice the largest distance from its ink to the paper), a digit is several strokes tall."""
    kept = []
    for box, marks in groups:
        top, left, bottom, right = box
        depth = ndimage.distance_transform_edt(np.pad(core[top:bottom, left:right], 1)).max()
        if bottom - top >= BLOB * 2 * depth:
            kept.append([box, marks])
    return kept


def check_one_number(groups: list) -> None:
    """Refuse what is not one number: too many marks (a page of text), or rows that do not overlap (lines)."""
    if len(groups) > MAX_DIGITS:
        raise ProjectError(f"{len(groups)} separate marks: more than a number of {MAX_DIGITS} digits (a page of text?)")
    rows, bottom = 0, -1
    for box, _ in sorted(groups, key=lambda g: g[0][0]):  # a row starts below everything above it
        rows, bottom = (rows + 1, box[2]) if box[0] >= bottom else (rows, max(bottom, box[2]))
    if rows > 1:
        raise ProjectError(f"{rows} lines of writing: a number is one line; crop to one number")


# ---------------------------------------------------------------- cutting the groups
def own_ink(owner: np.ndarray, marked: np.ndarray, ink: np.ndarray, box, g: int) -> np.ndarray:
    """The group's ink within its box: each pixel belongs to the group of the nearest mark (so an anti-aliased
    edge stays with its stroke), and dropped marks (specks, rules) are no one's."""
    top, left, bottom, right = box
    sub = owner[top:bottom, left:right]
    own = ink[top:bottom, left:right].copy()
    own[marked[top:bottom, left:right] & (sub == 0)] = 0.0
    if ((sub > 0) & (sub != g)).any():
        nearest = ndimage.distance_transform_edt(sub == 0, return_distances=False, return_indices=True)
        own[sub[nearest[0], nearest[1]] != g] = 0.0
    return own


def cut_group(own: np.ndarray, box, height: float) -> tuple[int, dict, list[int]]:
    """(bounds, {(i, j): (box, x28)}, strokes each boundary's cut crosses): the pieces between every pair of
    candidate cuts no wider than MAX_PIECE."""
    h, w = own.shape
    core = own > INK_THRESHOLD
    cuts = candidate_cuts(core, height) if w > SPLIT_ASPECT * h else []
    strokes = [0, *(crossings(core, cut) for cut in cuts), 0]
    cols = np.arange(w)[None, :]
    left_of = [np.zeros_like(core), *(cols <= cut[:, None] for cut in cuts), np.ones_like(core)]
    centres = [0.0, *(float(np.mean(cut)) for cut in cuts), float(w)]
    pieces = {}
    for i in range(len(left_of) - 1):
        for j in range(i + 1, len(left_of)):
            if j > i + 1 and centres[j] - centres[i] > MAX_PIECE * height:
                break
            cut = (i, j) != (0, len(left_of) - 1)
            pieces[i, j] = make_piece(np.where(left_of[j] & ~left_of[i], own, 0.0), box, cut)
    return len(left_of) - 1, pieces, strokes


def crossings(core: np.ndarray, cut: np.ndarray) -> int:
    """How many strokes a cut crosses: the runs of ink along it. Two digits touch at one stroke, mostly; a cut
    through a loop (a 0 into a 6 and a 7) crosses two."""
    along = core[np.arange(len(cut)), np.clip(cut, 0, core.shape[1] - 1)]
    return int(np.count_nonzero(along[1:] & ~along[:-1]) + along[0])


def candidate_cuts(core: np.ndarray, height: float) -> list[np.ndarray]:
    """Cuts through little ink: seams (bent around the strokes) from columns every CUT_STEP digit heights; of those
    that split the ink differently, those crossing the least ink (as many as the group's width calls for; see
    CUT_BASE), left to right."""
    h, w = core.shape
    lo, hi, step = round(EDGE * height), w - round(EDGE * height), max(1, round(CUT_STEP * height))
    if hi <= lo:
        return []
    paths, costs = seams(core, np.arange(lo, hi, step), max(1, round(BAND * height)))
    kept, seen, cols, total = [], set(), np.arange(w)[None, :], int(core.sum())
    for k in np.argsort(costs, kind="stable"):
        left = core & (cols <= paths[k][:, None])
        key = np.packbits(left).tobytes()
        if key not in seen and 0 < left.sum() < total:
            seen.add(key)
            kept.append(paths[k])
    kept = kept[: math.ceil(CUT_BASE + CUTS_PER_HEIGHT * max(0.0, w / height - SPLIT_ASPECT))]
    return sorted(kept, key=np.mean)


def seams(core: np.ndarray, columns: np.ndarray, band: int) -> np.ndarray:
    """Per column, the top-to-bottom path through the fewest ink pixels within ``band`` columns of it, moving at
    most one column per row (ties: the straightest): ((columns, rows) of x, the ink each crosses). All columns in
    one pass over the rows."""
    h, w = core.shape
    xs = columns[:, None] + np.arange(-band, band + 1)[None, :]  # (S, B): the columns each seam may use
    outside = np.where((xs < 0) | (xs >= w), np.inf, 0.0) + 1e-3 * np.abs(xs - columns[:, None])
    inked = core[:, np.clip(xs, 0, w - 1)].astype(np.float64)  # (h, S, B)
    total = inked[0] + outside
    back = np.zeros((h, *xs.shape), dtype=np.int8)
    pad = np.full((len(columns), 1), np.inf)
    for r in range(1, h):
        options = np.stack([np.hstack([pad, total[:, :-1]]), total, np.hstack([total[:, 1:], pad])])
        move = options.argmin(axis=0)
        back[r] = move - 1
        total = np.take_along_axis(options, move[None], axis=0)[0] + inked[r] + outside
    path = np.empty((len(columns), h), dtype=np.int64)
    path[:, -1] = total.argmin(axis=1)
    cost = total.min(axis=1)
    rows = np.arange(len(columns))
    for r in range(h - 1, 0, -1):
        path[:, r - 1] = path[:, r] + back[r, rows, path[:, r]]
    return np.take_along_axis(xs, path, axis=1), cost


def make_piece(piece: np.ndarray, box, cut: bool) -> tuple[tuple, np.ndarray | None]:
    """The ink between two cuts (rid of the neighbour's stray ends when it was cut): its box, framed by to_mnist
    (None: no ink)."""
    core = piece > INK_THRESHOLD
    if not core.any():
        return box[:2] * 2, None
    if cut:
        parts, n = ndimage.label(core, structure=np.ones((3, 3)))
        sizes = np.bincount(parts.ravel())
        if n > 1:  # the cut left a sliver of the neighbour's stroke: not part of this digit
            piece[(sizes[parts] < SLIVER * sizes[1:].sum()) & core] = 0.0
            core = piece > INK_THRESHOLD
    rows, cols = np.flatnonzero(core.any(axis=1)), np.flatnonzero(core.any(axis=0))
    crop = np.pad(piece[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)  # a paper border: to_mnist's median
    return (box[0] + rows[0], box[1] + cols[0], box[0] + rows[-1] + 1, box[1] + cols[-1] + 1), to_mnist(crop)


def build_layout(groups: list, factor: int, shape) -> Layout:
    """All groups' pieces in one batch (each model scores them in one call), boxes in the image's pixels."""
    boxes, inputs, reference, empty, out = [], [], [], [], []
    for box, bounds, pieces, strokes in groups:
        spans = {span: len(boxes) + n for n, span in enumerate(pieces)}
        for piece_box, x28 in pieces.values():
            boxes.append(tuple(int(v * factor) for v in piece_box))
            inputs.append(np.zeros((28, 28), np.float32) if x28 is None else x28)
            reference.append((box[2] - box[0]) * factor)
            empty.append(x28 is None)
        out.append(Group(tuple(int(v * factor) for v in box), bounds, spans, strokes))
    return Layout(
        tuple(shape),
        out,
        boxes,
        np.stack(inputs).astype(np.float32),
        np.array(reference, float),
        np.array(empty, dtype=bool),
    )
