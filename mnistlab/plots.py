"""Figures: matplotlib on the file-only Agg backend, saved atomically; confusion matrices and training curves."""

from __future__ import annotations

from pathlib import Path

from mnistlab.files import atomic_path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: figures are saved, never shown.

    Imported here, not at the top: every script imports this module, and --help or a bad flag should not wait.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(fig, path, tight: bool = True) -> None:
    """Save a matplotlib figure atomically and close it; ``tight=False`` for a figure laid out by fixed margins
    (bbox_inches="tight" draws the figure once more to measure it)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        bbox = {"bbox_inches": "tight"} if tight else {}
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=fig.dpi, **bbox)
    plt.close(fig)


def plot_confusion(y_true, y_pred, classes, path, title: str) -> None:
    """Confusion-matrix PNG, as in scikit-learn's examples; a long title wraps at the figure's edge."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    draw_confusion(ax, y_true, y_pred, classes, title)
    ax.title.set_wrap(True)
    words = names_are_words(classes)  # turned tick labels need more room below and to the left
    fig.subplots_adjust(left=0.22 if words else 0.1, bottom=0.2 if words else 0.1, right=0.97, top=0.88)
    savefig(fig, path, tight=False)


def names_are_words(classes) -> bool:
    """Whether class names are words (Fashion-MNIST's "T-shirt/top"), not digits: figures then lay them out
    with more room (turned tick labels, titles on two lines)."""
    return max(len(str(c)) for c in classes) > 2


def draw_confusion(ax, y_true, y_pred, classes, title: str, fontsize: float | None = None) -> None:
    """One confusion matrix on ``ax`` (scikit-learn's ConfusionMatrixDisplay), its axes labelled with the class
    names (turned when they are words)."""
    from sklearn.metrics import ConfusionMatrixDisplay  # here: imports a --help need not pay

    display = ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=range(len(classes)),
        display_labels=classes,
        ax=ax,
        colorbar=False,
        text_kw={"fontsize": fontsize},
        xticks_rotation=45 if names_are_words(classes) else "horizontal",
    )
    display.ax_.set_title(title)


def log_ticks(axis, unit: str = "", minor_labels: bool = True) -> None:
    """A log axis ticked at 1, 2 and 5 of each decade, labelled as plain numbers (0.05, 2), not matplotlib's
    default 10^k labels, which go through mathtext (parsed by pyparsing in every process that draws one)."""
    from matplotlib.ticker import FuncFormatter, LogLocator  # here: matplotlib loads in pyplot()

    def minor(v, _) -> str:  # within less than a decade the ticks between 1, 2 and 5 are labelled too
        low, high = axis.get_view_interval()
        return f"{v:g}{unit}" if minor_labels and high < 10 * low else ""

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{unit}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def plot_curves(history: dict, path: Path, title: str) -> None:
    """Loss and accuracy against the step: train points as a line, test (and validation) points as markers."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for split, style in (("train", {"lw": 0.8, "alpha": 0.7}), ("test", {"marker": "o"}), ("val", {"marker": "s"})):
        pts = history.get(split) or []
        if not pts:
            continue
        steps = [p["step"] for p in pts]
        axes[0].plot(steps, [p["loss"] for p in pts], label=split, **style)
        axes[1].plot(steps, [100 * p["accuracy"] for p in pts], label=split, **style)
    for ax, name in zip(axes, ("cross-entropy loss", "accuracy (%)"), strict=True):
        ax.set_xlabel("step (batches)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:  # a run stopped before its first log point has none
            ax.legend()
    axes[0].set_yscale("log")
    log_ticks(axes[0].yaxis)
    # Zoom on where the evaluated accuracy lies; the first train points, far lower, run in from below.
    evaluated = [100 * p["accuracy"] for split in ("test", "val") for p in history.get(split) or []]
    if evaluated:
        axes[1].set_ylim(max(0.0, min(evaluated) - 3), 100.2)
    fig.suptitle(title, wrap=True)
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.12, top=0.86, wspace=0.2)
    savefig(fig, path, tight=False)
