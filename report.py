"""Compare this repo's results with the published table: Markdown/CSV table and figures.

    python report.py                          # MNIST: reads results/mnist/*.json, writes report.{md,csv} and figures
    python report.py --dataset fashion-mnist  # another dataset's runs

Every run record (one per model and setting) is a row, with what the model saw: pixels, HOG features or (a
network) features it learned from the pixels. Under the table, a paragraph computed from the records: how much of
the gap between the best classical model and the best network the HOG features close, on the test set and (for
digits) on other writers' digits (handwriting.py's records). Figures go to plots/<dataset>/: comparison.png
(each model's test error against the published one, on a log axis), misclassified.png (the best model's errors),
confusion_matrices.png.
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import argparse
import csv
import math
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

import mnistlab.published as published
from mnistlab.cache import load_cache
from mnistlab.data import load_split
from mnistlab.errors import ProjectError, one_line, run_cli
from mnistlab.files import atomic_path, check_output_dirs, read_json
from mnistlab.flags import add_output_flags, dataset_type, path_type
from mnistlab.machine import cores_phrase
from mnistlab.paths import BUNDLED, REPO
from mnistlab.plots import draw_confusion, log_ticks, names_are_words, pyplot, savefig
from mnistlab.recipes import NETWORKS
from mnistlab.tables import markdown_table, replace_section

DEFAULTS_NOTE = "not in the write-up: the library's defaults on the write-up's pixels in [0, 1]"
DATA_SIZES = ("train_size", "test_size")  # explicit settings that change the data, not the model


def read_records(folder: Path):
    """(path, content) of each readable *.json in ``folder``; one that cannot be read is left out with a note."""
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):  # .<name>.<pid>.<hex>.tmp.json: being written, or left by a killed run
            continue
        try:
            record = read_json(path)
        except ProjectError as exc:  # junk in the results folder: a folder, a FIFO, a truncated or foreign file
            left_out(path, str(exc).split("; ")[0])
            continue
        yield path, record


def load_results(results_dir: Path, dataset: str) -> list[dict]:
    """Every finished test-set run of ``dataset`` (validation runs are for tuning and are not reported);
    a record whose fields lie is left out with a note on stderr."""
    folder = Path(results_dir) / dataset
    records = []
    for path, record in read_records(folder):
        if not isinstance(record, dict) or record.get("split") != "test" or "accuracy" not in record:
            continue  # a validation run, or a file that is not a run's record
        problem = record_problem(record, dataset)
        if problem:
            left_out(path, problem)
        else:
            records.append(record)
    if not records:
        raise ProjectError(f"no model results in {folder}/; run ml_main.py and dl_main.py (or experiment.py) first")
    order = list(published.TABLES.get(dataset, published.WRITE_UP).rows)  # the published table's order first
    rank, family = {name: i for i, name in enumerate(order)}, published.recipe(dataset)
    return sorted(
        records,
        key=lambda r: (rank.get(r["model"], len(order)), r["model"], not setting(r).startswith(family), r["name"]),
    )


def left_out(path: Path, why: str) -> None:
    print(f"report.py: note: {one_line(path)} left out: {one_line(why)}", file=sys.stderr)


def is_number(value, low: float = -math.inf, high: float = math.inf) -> bool:
    """A finite int or float (not a bool) from ``low`` to ``high``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and low <= value <= high


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_label(text) -> bool:
    """A name that a table row can show: printable text without the Markdown table's "|"."""
    return isinstance(text, str) and bool(text) and text.isprintable() and "|" not in text


def record_problem(record: dict, dataset: str | None = None) -> str | None:
    """Why a results file cannot be reported, or None: its fields must have their types, and its accuracy
    must be what its own predictions score against its labels (a file edited by hand is not a result); its
    summary over seeds must be that of its runs, and it must be a record of ``dataset``."""
    classes, pred, labels = record.get("classes"), record.get("predictions"), record.get("labels")
    named = is_label(record.get("model")) and is_label(record.get("name"))
    if not (named and isinstance(record.get("config"), dict) and isinstance(classes, list) and classes):
        return "its model, name, config or classes are missing or of the wrong type"
    if not record["name"].startswith(record["model"] + "-"):
        return f"its name {record['name']!r} is not a run of its model {record['model']!r}"
    if dataset is not None and record.get("dataset") != dataset:
        return f"it is a record of the dataset {record.get('dataset')!r}, not of {dataset}"
    if not (isinstance(pred, list) and isinstance(labels, list) and len(pred) == len(labels) > 0):
        return "its predictions and labels are not two lists of the same length"
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(classes) for v in pred + labels):
        return f"its predictions or labels hold values outside 0-{len(classes) - 1}"
    if record.get("n_eval") != len(labels) or not is_count(record["n_eval"]):
        return f"its n_eval {record.get('n_eval')!r} is not the number of its labels ({len(labels)})"
    accuracy = record["accuracy"]
    if not is_number(accuracy, 0, 1):
        return f"its accuracy is {accuracy!r}, not a number from 0 to 1"
    scored = sum(p == t for p, t in zip(pred, labels, strict=True)) / len(labels)
    if abs(accuracy - scored) > 1e-9:
        return f"its accuracy {accuracy!r} is not what its predictions score ({scored:.4f})"
    return seeds_problem(record) or fields_problem(record)


def seeds_problem(record: dict) -> str | None:
    """Why the summary over seeds (accuracy_mean, accuracy_std, seeds) is not that of the record's runs."""
    runs = record.get("runs", [record])
    if not (isinstance(runs, list) and runs and all(isinstance(r, dict) for r in runs)):
        return "its runs are not a list of seeds"
    if not all(is_number(r.get("accuracy"), 0, 1) for r in runs):
        return "its runs do not each have an accuracy from 0 to 1"
    accs = [r["accuracy"] for r in runs]
    if abs(accs[0] - record["accuracy"]) > 1e-9:
        return "its accuracy is not its first seed's"
    mean, std = record.get("accuracy_mean", accs[0]), record.get("accuracy_std")
    if not is_number(mean) or abs(mean - statistics.fmean(accs)) > 1e-9:
        return f"its accuracy_mean {mean!r} is not the mean of its seeds' accuracies"
    spread = None if len(accs) == 1 else statistics.stdev(accs)
    if not (std is None and spread is None or is_number(std) and spread is not None and abs(std - spread) <= 1e-9):
        return f"its accuracy_std {std!r} is not the spread of its {len(accs)} seed(s)"
    seeds = record.get("seeds")
    if seeds is not None and not (isinstance(seeds, list) and len(seeds) == len(accs)):
        return f"its seeds {seeds!r:.40} do not match its {len(accs)} run(s)"
    return None


def fields_problem(record: dict) -> str | None:
    """Why a field that the table or its notes show has the wrong type (timings, sizes, versions)."""
    for key in ("seconds_train", "seconds_fit", "seconds_predict"):
        if record.get(key) is not None and not is_number(record[key], 0):
            return f"its {key} is {record[key]!r:.40}, not a number of seconds"
    if record.get("n_train") is not None and not is_count(record["n_train"]):
        return f"its n_train is {record['n_train']!r:.40}, not a number of images"
    versions = record.get("versions", {})
    if not (isinstance(versions, dict) and all(isinstance(v, str | int | float | None) for v in versions.values())):
        return "its versions are not a table of names and versions"
    return None


def check_against_data(records: list[dict], dataset: str, data_dir: Path, folder: Path) -> list[dict]:
    """The records that were scored on this dataset's test images in ``data_dir``: their classes are the dataset's
    and their labels its first n_eval test labels. The others come from other data: left out, with a note."""
    cache = load_cache(dataset, data_dir)
    classes, y_test = [str(c) for c in cache["classes"]], cache["y_test"]
    kept = []
    for r in records:
        path = Path(folder) / f"{r['name']}.json"
        if r["classes"] != classes:
            left_out(path, f"its classes are not those of {dataset} in {data_dir}/")
        elif r["n_eval"] > len(y_test) or not np.array_equal(y_test[: r["n_eval"]], r["labels"]):
            left_out(path, f"its labels are not the {dataset} test labels in {data_dir}/; rerun that model")
        else:
            kept.append(r)
    if not kept:
        raise ProjectError(f"no results of the {dataset} data in {data_dir}/; rerun the models on it")
    return kept


def setting(record: dict) -> str:
    """The run's name without its model: the recipe and any setting given explicitly (e.g. paper-epochs2)."""
    return record["name"].removeprefix(record["model"] + "-")


def changed_by_hand(record: dict) -> list[str]:
    """The settings given explicitly that change the recipe's model (not the data sizes), e.g. ['epochs2']."""
    return [part for part in setting(record).split("-")[1:] if part != "val" and not part.startswith(DATA_SIZES)]


def note(record: dict, dataset: str | None = None) -> str:
    """What a reader needs to compare the row with the published figure of ``dataset`` (default: the record's)."""
    dataset = dataset or record.get("dataset")
    recipe, model, table = record["config"].get("recipe"), record["model"], published.TABLES.get(dataset)
    if changed_by_hand(record):  # a recipe with settings changed by hand (paper-epochs2) was chosen by no one
        return ""
    if recipe == "tuned":
        return f"tuned for {dataset} on a validation split held out of the training data (see Classifier.py)"
    if table and recipe == table.recipe and model in table.notes:
        return table.notes[model]
    if recipe == "paper" and dataset == "mnist":
        return published.WRITE_UP.notes.get(model, DEFAULTS_NOTE)
    if recipe == "paper":  # the write-up's settings on another dataset: its notes on MNIST figures do not apply
        return "the write-up's settings" if model in published.WRITE_UP.rows else DEFAULTS_NOTE
    if recipe == "benchmark":
        return "the Fashion-MNIST benchmark's settings (Classifier.py)"
    return f"the {recipe} recipe, chosen on a validation split (dl_main.py)"


def shown_setting(record: dict) -> str:
    """The setting as the table and figures show it: a model the write-up never had has no published
    settings, so its ``paper`` run (the library's defaults) is shown as "defaults"."""
    name = setting(record)
    if name.startswith("paper") and record["model"] not in published.WRITE_UP.rows:
        return "defaults" + name.removeprefix("paper")
    return name


# ---------------------------------------------------------------- pixels against features
LEARNED = "learned from pixels"  # a network's features: it learns its own from the pixels
DIGITS = [str(d) for d in range(10)]
UCI_SETS = ("uci-nearest", "uci-bilinear")  # handwriting.py's two renderings of other writers' (UCI) digits
OTHER_WRITERS = "On other writers' digits (UCI, the mean of handwriting.py's nearest and bilinear renderings)"
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "kmnist": "KMNIST"}
KIND_FAMILIES = ("network", "classical")  # handwriting.py's "family" of a saved model
WHAT = {"network": "a network", "pixels": "a classical model on pixels", "HOG": "a classical model on HOG features"}


class Score(NamedTuple):
    """One model's accuracy in the paragraph under the table, with what it saw (a key of WHAT)."""

    name: str
    kind: str
    accuracy: float


def classical_features(config: dict) -> str:
    """What a classical model saw: "pixels" or "HOG" (mnistlab.features), ", deskewed" where it deskewed first;
    records from before HOG existed have no "features" setting: they saw pixels."""
    seen = "HOG" if config.get("features") == "hog" else "pixels"
    return f"{seen}, deskewed" if config.get("deskew") else seen


def features_used(record: dict) -> str:
    """The table's features column: a network's are learned from the pixels, a classical model's are its settings'."""
    return LEARNED if record["model"] in NETWORKS else classical_features(record["config"])


def kind(features: str) -> str:
    """The group of a features entry that the paragraph and the figure compare: network, HOG or pixels."""
    return "network" if features == LEARNED else features.split(",")[0]


def comparable_scores(records: list[dict]) -> list[Score]:
    """The test-set runs that may be compared: trained and scored on the full split (a --train-size or --test-size
    run is a quick check, not a model to rank); several seeds count with their mean."""
    full = [r for r in records if not any(part.startswith(DATA_SIZES) for part in setting(r).split("-"))]
    return [Score(r["name"], kind(features_used(r)), r.get("accuracy_mean", r["accuracy"])) for r in full]


def load_handwriting(folder: Path, records: list[dict]) -> list[Score]:
    """Each model's accuracy on other writers' digits from handwriting.py's records (<folder>/handwriting/*.json);
    none when it was never run. A record that cannot be read or used is left out with a note on stderr."""
    runs = {r["name"]: r for r in records}
    scores = []
    for path, record in read_records(folder / "handwriting"):
        score = handwriting_score(record, runs)
        if isinstance(score, Score):
            scores.append(score)
        else:
            left_out(path, score)
    return scores


def handwriting_score(record, runs: dict) -> Score | str:
    """A handwriting.py record as a Score (the mean of its UCI sets), or why it cannot be one. A classical model's
    features are those its record names (copied from the saved model), else those of the test-set run of the same
    name, which saved that model."""
    sets = record.get("sets") if isinstance(record, dict) else None
    if not (isinstance(sets, dict) and is_label(record.get("name")) and record.get("family") in KIND_FAMILIES):
        return "not a handwriting.py record"
    accuracies = [sets[s].get("accuracy") if isinstance(sets.get(s), dict) else None for s in UCI_SETS]
    if not all(is_number(a, 0, 1) for a in accuracies):
        return f"it has no accuracy on both {' and '.join(UCI_SETS)}"
    name, accuracy = record["name"], statistics.fmean(accuracies)
    if record["family"] == "network":
        return Score(name, "network", accuracy)
    if record.get("features"):
        return Score(name, kind(classical_features(record)), accuracy)
    if name in runs:
        return Score(name, kind(features_used(runs[name])), accuracy)
    return f"it does not say what {name} saw (pixels or HOG), and there is no test-set record {name}.json that does"


def behind(difference: float) -> str:
    """How far an accuracy is from the network's, ``difference`` = network - it, in percentage points."""
    points = round(100 * difference, 2)
    if points == 0:
        return "level with"
    return f"{abs(points):.2f} points {'behind' if points > 0 else 'ahead of'}"


def closed(gap: float, left: float) -> str:
    """How much of the pixels' gap to the network (``gap``) the features close, leaving ``left``."""
    if gap <= 0:
        return "pixels already reach the network, so there is no gap for the features to close"
    share = (gap - left) / gap
    if share < 0:
        return f"the features widen the gap by {-share:.0%}"
    return f"the features close {share:.0%} of the gap" + (" and overtake the network" if left < 0 else "")


def gap_sentence(where: str, scores: list[Score], hint: str) -> str:
    """One sentence of the paragraph: the best classical model on pixels and on HOG against the best network."""
    best = {k: max((s for s in scores if s.kind == k), key=lambda s: s.accuracy, default=None) for k in WHAT}
    if lacking := [WHAT[k] for k, s in best.items() if s is None]:
        listed = " or ".join([", ".join(lacking[:-1]), lacking[-1]] if len(lacking) > 1 else lacking)
        return f"{where} there is no record of {listed} yet ({hint}), so the gap is not measured."
    net, pix, hog = best["network"], best["pixels"], best["HOG"]
    gap, left = net.accuracy - pix.accuracy, net.accuracy - hog.accuracy

    def shown(s: Score) -> str:
        return f"{s.name} {pct(s.accuracy)}"

    return (
        f"{where} the best classical model on pixels ({shown(pix)}) is {behind(gap)} the best network "
        f"({shown(net)}); on HOG features ({shown(hog)}) it is {behind(left)} it: {closed(gap, left)}."
    )


def features_paragraph(records: list[dict], dataset: str, handwriting: list[Score]) -> str:
    """Under the table, computed from the records: how much of the gap between the best classical model and the
    best network the HOG features close, on this dataset's test set and, for digits, on other writers' digits."""
    where = f"On the {DATASET_NAMES.get(dataset, dataset)} test set"
    sentences = [gap_sentence(where, comparable_scores(records), "python experiment.py runs every model")]
    if records[0]["classes"] == DIGITS:  # handwriting.py measures digit models only
        sentences.append(gap_sentence(OTHER_WRITERS, handwriting, "python handwriting.py --all measures them"))
    return "\n" + " ".join(sentences) + "\n"


def table_rows(records: list[dict], dataset: str) -> list[dict]:
    rows = []
    for r in records:
        figure = published.figure(dataset, r["model"])
        low, high = figure if isinstance(figure, tuple) else (figure, None)
        rows.append(
            {
                "model": r["model"],
                "setting": shown_setting(r),
                "features": features_used(r),
                "published": low,
                "published_high": high,
                "this_repo": r.get("accuracy_mean", r["accuracy"]),  # the mean over seeds where there are several
                "std": r.get("accuracy_std"),
                "seeds": len(r.get("seeds") or [r.get("seed")]),
                "n_train": r.get("n_train"),
                "n_test": r.get("n_eval"),
                "seconds_train": r.get("seconds_train", r.get("seconds_fit")),
                "seconds_predict": r.get("seconds_predict"),
                "notes": note(r, dataset),
            }
        )
    return rows


def pct(value) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


TABLE_HEADER = ("model", "setting", "features", "published", "this repo", "train s", "predict s", "train/test", "notes")


def markdown(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        acc = pct(r["this_repo"])
        if r["std"] is not None:
            acc += f" ± {100 * r['std']:.2f} ({r['seeds']} seeds)"
        secs = [f"{r[k]:.1f}" if r[k] is not None else "" for k in ("seconds_train", "seconds_predict")]
        split = f"{r['n_train']}/{r['n_test']}"
        shown = pct(r["published"]) + (f"–{pct(r['published_high'])}" if r["published_high"] is not None else "")
        lines.append([r["model"], r["setting"], r["features"], shown, acc, *secs, split, r["notes"]])
    return markdown_table(TABLE_HEADER, lines) + "\n"


def published_note(dataset: str) -> str:
    """Under the table: whose figures the published column holds and how they were measured."""
    table = published.TABLES.get(dataset)
    if table is None:
        return f"\nNo published figures are known for {dataset}; the published column is empty.\n"
    refs = ", ".join(f"{label} {pct(value)}" for label, value in table.references.items())
    refs = f" Published, with no row here: {refs}." if refs else ""
    return f"\nPublished column: {table.source} ({table.protocol}).{refs}\n"


def mixed_splits_note(rows: list[dict]) -> str:
    """A warning under the table when its rows were scored on different test sets (a --test-size run left over)."""
    sizes = sorted({r["n_test"] for r in rows if r["n_test"] is not None})
    if len(sizes) < 2:
        return ""
    return (
        f"\n**Not comparable:** these rows were scored on test sets of {', '.join(map(str, sizes))} images; "
        "rerun them on one split (see train/test).\n"
    )


def machine_note(records: list[dict], experiment_seconds: float | None = None) -> str:
    """Where the table's seconds and numbers come from: the CPU and the library versions the records saved."""
    keys = ("cpu", "python", "torch", "torchvision", "numpy", "scikit-learn", "scikit-learn-intelex")
    seen = {k: sorted({str(r.get("versions", {}).get(k)) for r in records} - {"None"}) for k in keys}
    cpu = " / ".join(seen.pop("cpu")) or "a CPU the records do not name"
    cores = sorted({r.get("versions", {}).get("cpus") for r in records} - {None}, key=str)
    libs = ", ".join(f"{k} {' / '.join(v)}" for k, v in seen.items() if v)
    took = f" `python experiment.py` took {experiment_seconds / 60:.1f} min." if experiment_seconds else ""
    count = cores_phrase(cores[0]) if len(cores) == 1 else "/".join(map(str, cores)) + " cores"
    return f"\nMeasured on {cpu} ({count}) with {libs}.{took}\n"


def last_experiment_seconds(folder: Path) -> float | None:
    """How long the last python experiment.py on this dataset took before its report (its timings.json), so that
    a report redrawn later (with a run added) still says it; None when there is no such file, or it is unreadable."""
    path = folder / "experiment" / "timings.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ProjectError as exc:
        left_out(path, str(exc).split("; ")[0])
        return None
    steps = record.get("seconds") if isinstance(record, dict) else None
    if not isinstance(steps, dict):
        return None
    total, report_seconds = record.get("seconds_total"), steps.get("report", 0)
    if is_number(total, 0) and is_number(report_seconds, 0) and total > report_seconds:
        return total - report_seconds  # wall time: the steps that ran side by side overlap, so their sum is more
    return sum(v for k, v in steps.items() if k != "report" and is_number(v, 0)) or None


def write_csv(rows: list[dict], path: Path) -> None:
    """The table's rows (table_rows, never empty) as CSV, one column per field."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_images(record: dict, data_dir: Path) -> np.ndarray:
    """The test images a record was scored on (its first n_eval), checked against the labels it saved."""
    x, y = load_split("test", record["dataset"], data_dir, size=record["n_eval"])
    if not np.array_equal(y, record["labels"]):
        raise ProjectError(
            f"{record['name']}: its saved labels differ from the {record['dataset']} test images in "
            f"{data_dir}/; the record comes from other data: rerun that model"
        )
    return x


KIND_STYLE = {  # what a model saw -> its marker's colour and shape, and its legend entry
    "network": ("#1f77b4", "o", "this repo: network (features learned from pixels)"),
    "HOG": ("#2ca02c", "s", "this repo: classical model on HOG features"),
    "pixels": ("#ff7f0e", "D", "this repo: classical model on pixels"),
}


def error_pct(accuracy: float, n_test: int | None) -> float:
    """The test error, 100 - accuracy in %; a perfect score is drawn at half an image's worth (log has no zero)."""
    return max(100 * (1 - accuracy), 50 / (n_test or 10_000))


def published_errors(row: dict) -> tuple[float, float]:
    """The published test error (lowest, highest) in %: one figure twice, a range's ends, or (nan, nan) for none."""
    if row["published"] is None:
        return math.nan, math.nan
    high = row["published_high"] if row["published_high"] is not None else row["published"]
    return 100 * (1 - high), 100 * (1 - row["published"])


def plot_comparison(rows: list[dict], path: Path, dataset: str) -> None:
    """Each model's test error on a log axis, fewest at the top, marked by what it saw, beside its published error
    and the published references no row reproduces (dashed lines). Error, not accuracy: at 99% accuracy, bars from
    zero look alike where a log axis shows 0.4% against 3% as 7 times the errors."""
    plt = pyplot()
    rows = sorted(rows, key=lambda r: -r["this_repo"])
    ours = np.array([error_pct(r["this_repo"], r["n_test"]) for r in rows])
    pub = np.array([published_errors(r) for r in rows]).reshape(len(rows), 2)
    ypos = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 2))
    ax.hlines(ypos, np.fmin(ours, pub[:, 0]), np.fmax(ours, pub[:, 1]), color="#dddddd", lw=1, zorder=1)  # pairs
    draw_published(ax, ypos, pub)
    draw_ours(ax, ypos, rows, ours)
    table = published.TABLES.get(dataset)
    references = draw_references(ax, table)
    log_error_axis(ax, np.concatenate([ours, pub[~np.isnan(pub)], references]))
    names = [f"{r['model']} ({r['setting']})" if r["setting"] else r["model"] for r in rows]
    ax.set_yticks(ypos, names)
    ax.set_ylim(len(rows) - 0.5, -1.3 if references else -0.7)  # fewest errors on top, room for the references
    source = f"\n(published: {table.source})" if table else ""
    ax.set_title(f"{DATASET_NAMES.get(dataset, dataset)}: test error, this repo vs published{source}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False, fontsize=8)
    savefig(fig, path)


def draw_published(ax, ypos: np.ndarray, pub: np.ndarray) -> None:
    """The published errors (N, 2: lowest, highest; nan: none): a ring at the highest, a bar over a range."""
    ax.hlines(ypos, pub[:, 0], pub[:, 1], color="#999999", lw=4, zorder=2)
    has = ~np.isnan(pub[:, 1])
    ax.scatter(pub[has, 1], ypos[has], s=45, facecolors="white", edgecolors="#777777", label="published", zorder=3)
    for y, (lo, hi) in zip(ypos[has], pub[has], strict=True):
        text = f"{hi:.2f}%" if lo == hi else f"{lo:.1f}–{hi:.1f}%"
        ax.annotate(text, (hi, y), xytext=(0, -11), textcoords="offset points", ha="center", fontsize=7, color="#555")


def draw_ours(ax, ypos: np.ndarray, rows: list[dict], ours: np.ndarray) -> None:
    """This repo's errors, one marker style per kind of features (KIND_STYLE), each with its value above it."""
    for name, (color, marker, label) in KIND_STYLE.items():
        mine = np.array([kind(r["features"]) == name for r in rows], dtype=bool)
        if mine.any():  # a legend entry only for the kinds shown
            ax.scatter(ours[mine], ypos[mine], s=40, color=color, marker=marker, label=label, zorder=4)
    for y, r, err in zip(ypos, rows, ours, strict=True):
        shown = "0 wrong" if r["this_repo"] == 1 else f"{err:.2f}%"
        ax.annotate(shown, (err, y), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)


def draw_references(ax, table) -> list[float]:
    """The published references no row reproduces (e.g. human performance) as dashed lines; their errors."""
    references = {label: 100 * (1 - value) for label, value in (table.references if table else {}).items()}
    for label, err in references.items():
        ax.axvline(err, color="#d62728", ls="--", lw=1)
        ax.text(err, -0.9, f" {label} {err:.1f}%", color="#d62728", fontsize=8, ha="center")
    return list(references.values())


def log_error_axis(ax, values: np.ndarray) -> None:
    """A log x axis around ``values`` (errors in %), ticked at 1, 2 and 5 of each decade and labelled in %."""
    ax.set_xscale("log")
    ax.set_xlim(values.min() / 1.6, values.max() * 1.6)
    log_ticks(ax.xaxis, "%", minor_labels=False)  # the points carry their values
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_xlabel("test error: 100 − accuracy (%), log scale; further left is better", labelpad=2)


def plot_misclassified(record: dict, data_dir: Path, classes: list, path: Path, limit: int = 40) -> int:
    """The first ``limit`` test images that ``record`` got wrong, true and predicted class; returns how many."""
    plt = pyplot()
    x, y = test_images(record, data_dir), np.asarray(record["labels"])
    pred = np.asarray(record["predictions"])
    wrong = np.flatnonzero(pred != y)
    cols = 10
    words = names_are_words(classes)  # true and predicted on two lines
    sep = "\n" if words else ""
    rows = max(1, int(np.ceil(min(limit, len(wrong)) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * (1.75 if words else 1.45)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong[:limit], strict=False):
        ax.imshow(x[i], cmap="gray_r")
        ax.set_title(f"{classes[y[i]]}{sep}→{classes[pred[i]]}", fontsize=8, color="#b22222")
    fig.suptitle(f"{record['name']}: {len(wrong)} of {len(y)} test images wrong (true→predicted), first {limit}")
    savefig(fig, path)
    return len(wrong)


def plot_confusions(records: list[dict], classes: list, path: Path) -> None:
    """One confusion matrix per model, of its most accurate run, on a grid with no empty panel."""
    plt = pyplot()
    models = dict.fromkeys(r["model"] for r in records)  # in the table's order
    records = [max((r for r in records if r["model"] == m), key=lambda r: r["accuracy"]) for m in models]
    cols = min(next((c for c in (4, 3, 5) if len(records) % c == 0), 4), len(records))
    rows = int(np.ceil(len(records) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, records, strict=False):
        ax.axis("on")
        draw_confusion(ax, r["labels"], r["predictions"], classes, f"{r['name']}: {100 * r['accuracy']:.2f}%", 8)
    fig.tight_layout()
    savefig(fig, path)


def update_readme(readme: Path, table: str, dataset: str = "mnist") -> None:
    """Replace the dataset's section of the README (between its two markers) with ``table``."""
    replace_section(readme, "results" if dataset == "mnist" else f"results:{dataset}", table)


# The datasets whose table the README shows, and the prefix of their figures' names in plots/ (tracked files).
README_SECTIONS = {"mnist": "", "fashion-mnist": "fashion-mnist_"}
README_FIGURES = (
    "comparison.png",
    "misclassified.png",
    "confusion_matrices.png",
    "samples.png",
    "curves_cnn-paper.png",
)


def copy_readme_figures(figures: Path, dataset: str) -> None:
    for name in README_FIGURES:
        if (figures / name).is_file():
            with atomic_path(REPO / "plots" / (README_SECTIONS[dataset] + name)) as tmp:
                tmp.write_bytes((figures / name).read_bytes())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=dataset_type, default="mnist", help="whose runs to report (default: mnist)")
    p.add_argument("--data-dir", type=path_type, default=BUNDLED, help="data folder (for the test images)")
    add_output_flags(p, checkpoints=False)
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="also write the table into README.md and copy the figures it shows to plots/ "
        "(the only step that changes tracked files)",
    )
    return p.parse_args(argv)


def make_report(
    dataset: str,
    data_dir: Path,
    results_dir: Path,
    plots_dir: Path,
    update: bool = False,
    experiment_seconds: float | None = None,
) -> str:
    """Table (Markdown and CSV) and figures from the saved records; returns the Markdown table.
    ``experiment_seconds``: from experiment.py, how long its steps before the report took."""
    out, figures = Path(results_dir) / dataset, Path(plots_dir) / dataset
    if update and dataset not in README_SECTIONS:  # refused before anything is written
        raise ProjectError(f"--update-readme: the README has sections for {', '.join(README_SECTIONS)} only")
    records = load_results(results_dir, dataset)  # first: with nothing to report, no folder is created
    records = check_against_data(records, dataset, data_dir, out)  # the test images the figures need, before any write
    check_output_dirs({"--results-dir": out, "--plots-dir": figures})
    classes = records[0]["classes"]
    rows = table_rows(records, dataset)
    experiment_seconds = experiment_seconds or last_experiment_seconds(out)
    notes = published_note(dataset) + mixed_splits_note(rows) + machine_note(records, experiment_seconds)
    paragraph = features_paragraph(records, dataset, load_handwriting(out, records))
    table = markdown(rows) + paragraph + notes
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(f"# Results on {dataset}\n\n{table}")
    write_csv(rows, out / "report.csv")
    plot_comparison(rows, figures / "comparison.png", dataset)
    best = max(records, key=lambda r: r["accuracy"])
    plot_misclassified(best, data_dir, classes, figures / "misclassified.png")
    plot_confusions(records, classes, figures / "confusion_matrices.png")
    if update:
        update_readme(REPO / ("README.md" if dataset == "mnist" else f"docs/{dataset}.md"), table, dataset)
        copy_readme_figures(figures, dataset)
    return table


def _main(argv=None) -> int:
    args = parse_args(argv)
    table = make_report(args.dataset, args.data_dir, args.results_dir, args.plots_dir, args.update_readme)
    print(table, end="")
    print(
        f"wrote {args.results_dir / args.dataset}/report.md, report.csv and figures in {args.plots_dir / args.dataset}/"
    )
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
