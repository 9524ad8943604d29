"""Tests of the training distortions (augment.py) and of the non-MNIST digit sets (handwriting.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dl_main
import handwriting
import mnistlab.augment as augment
from conftest import output_flags
from mnistlab.data import load_split
from mnistlab.images import to_mnist
from mnistlab.recipes import DISTORTED
from mnistlab.saved_models import save_classical
from model_files import DIGITS, fit_pipeline


def strokes(n: int = 8) -> torch.Tensor:
    """(n, 1, 28, 28) synthetic digits: a ring and a bar of 2 px strokes, light on black, as MNIST."""
    x = torch.zeros(n, 1, 28, 28)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    ring = ((yy - 14) ** 2 / 64 + (xx - 12) ** 2 / 25 - 1).abs() < 0.2
    x[:, 0][:, ring] = 1.0
    x[:, 0, 6:22, 20:22] = 1.0
    return x


def test_distort_keeps_shape_range_device_and_is_seeded():
    x = strokes()
    a = augment.distort(x, 1.0, "all", torch.Generator().manual_seed(5))
    b = augment.distort(x, 1.0, "all", torch.Generator().manual_seed(5))
    c = augment.distort(x, 1.0, "all", torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each sample gets its own parameters
    torch.manual_seed(3)  # without a generator: torch's global one, as seeded (and checkpointed) by dl_main
    d = augment.distort(x, 1.0, "all")
    torch.manual_seed(3)
    assert torch.equal(d, augment.distort(x, 1.0, "all"))
    assert torch.equal(augment.distort(x, 0.0, "all"), x)  # strength 0: off


def test_every_kind_runs_alone_and_changes_the_batch():
    x = strokes(64)
    for kind in augment.KINDS:
        y = augment.distort(x, 1.0, kind, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1, kind
    base = augment.distort(x, 1.0, "", torch.Generator().manual_seed(0))
    assert not torch.equal(base, augment.distort(x, 1.0, "elastic", torch.Generator().manual_seed(0)))


def test_parse_kinds():
    assert augment.parse_kinds("") == () and augment.parse_kinds(None) == ()
    assert augment.parse_kinds("all") == augment.KINDS
    assert augment.parse_kinds("blur, width") == ("width", "blur")  # KINDS order
    with pytest.raises(ValueError, match="unknown distortion"):
        augment.parse_kinds("width,sparkle")


def test_dilation_thickens_and_erosion_thins():
    x = strokes(1)
    thick, thin = augment.dilate(x), augment.erode(x)
    assert (thick >= x).all() and thick.sum() > 1.5 * x.sum()
    assert (thin <= x).all() and thin.sum() < x.sum()
    # The random mix: over a batch, some samples get more ink and some less, none outside [erode, dilate].
    batch = x.expand(200, -1, -1, -1)
    y = augment.stroke_width(batch, 1.0, torch.Generator().manual_seed(0))
    ink = y.sum((1, 2, 3))
    assert (ink > x.sum() + 1).any() and (ink < x.sum() - 1).any() and (ink == x.sum()).any()
    assert (y <= thick + 1e-6).all() and (y >= thin - 1e-6).all()


def test_blur_spreads_and_blocky_quantises():
    x = strokes(200)
    g = torch.Generator().manual_seed(0)
    y = augment.blur(x, 1.0, g)
    blurred = (y - x).abs().sum((1, 2, 3)) > 1e-3
    assert blurred.any() and (~blurred).any()  # only part of the batch
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-3)  # ink moved, not lost
    changed = lambda z: ((z - x).abs().sum((1, 2, 3)) > 1e-3).float().mean()  # noqa: E731
    assert 0.8 < changed(augment.blocky(x, 3.0, g)) <= 1 and 0.05 < changed(augment.blocky(x, 0.5, g)) < 0.3
    z = augment.blocky(x, 3.0, g)
    assert torch.allclose(z.mean((1, 2, 3)), x.mean((1, 2, 3)), rtol=0.25)  # area averaging keeps the ink, roughly


def test_refit_puts_the_ink_in_the_20px_box_like_to_mnist():
    small = torch.nn.functional.interpolate(strokes(2), scale_factor=0.5, mode="bilinear")  # (2, 1, 14, 14)
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 2:16, 11:25] = small  # a digit half the size, off-centre
    y = augment.refit(x)
    top, bottom, left, right, has_ink = augment.ink_box(y, 0.25)
    assert has_ink.all() and (torch.maximum(bottom - top, right - left) + 1 - 20).abs().max() <= 1
    iy = torch.arange(28.0)
    mass = y[0, 0].sum()
    assert abs((y[0, 0].sum(1) * iy).sum() / mass - 14) < 0.5 and abs((y[0, 0].sum(0) * iy).sum() / mass - 14) < 0.5
    expected = torch.from_numpy(to_mnist(x[0, 0].numpy()))
    gap = (y[0, 0] / y[0, 0].max() - expected).abs().mean()  # to what a user's image of it becomes
    assert gap < (x[0, 0] - expected).abs().mean() / 2  # at least twice as close as before the refit
    assert torch.equal(augment.refit(torch.zeros(1, 1, 28, 28)), torch.zeros(1, 1, 28, 28))  # no ink: unchanged


@pytest.mark.slow
def test_drawn_sets_are_deterministic_with_the_right_sizes(monkeypatch):
    monkeypatch.setattr(handwriting, "FONT_VARIANTS", 1)
    monkeypatch.setattr(handwriting, "STROKE_VARIANTS", 4)
    fonts = handwriting.font_paths()
    assert len(fonts) >= 12  # matplotlib ships DejaVu at least; STIX and Computer Modern with it
    x1, y1 = handwriting.build_set("drawn-val")
    x2, y2 = handwriting.build_set("drawn-val")
    x3, _ = handwriting.build_set("drawn-test")
    n = 10 * (len(fonts) + 4)
    assert x1.shape == (n, 28, 28) and x1.dtype == np.float32 and 0 <= x1.min() and x1.max() <= 1
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)
    assert np.array_equal(np.bincount(y1), np.full(10, n // 10))
    # Inputs laid out like MNIST by inference.to_mnist: ink in the middle, black border.
    assert x1[:, :, :2].max() == 0 and x1[:, 12:16, 12:16].mean() > 0


@pytest.mark.slow
def test_uci_digits_are_the_sklearn_ones_through_to_mnist():
    from sklearn.datasets import load_digits

    x, y = handwriting.build_set("uci-bilinear")
    assert x.shape == (1797, 28, 28) and np.array_equal(y, load_digits().target)
    assert 0 <= x.min() and x.max() <= 1 and x[:, 0].max() == 0  # light ink on black, a blank top row
    xn, _ = handwriting.build_set("uci-nearest")
    assert not np.array_equal(x, xn)


@pytest.mark.slow
def test_cli_measures_every_model_side_by_side(full_mnist, tmp_path, monkeypatch, capsys):
    """A network trained with the handwriting recipe and a classical model, measured with --all."""
    out, data = tmp_path / "out", full_mnist[0]
    code = dl_main.main(
        [
            "--data-dir",
            str(data),
            "--train-size",
            "2000",
            "--test-size",
            "200",
            "--epochs",
            "2",
            "--recipe",
            "best",
            "--threads",
            "1",
            *output_flags(out),
        ]
    )
    assert code == 0
    models = out / "c" / "mnist"
    (trained,) = models.glob("cnn-best-*.pt")  # named by its explicit settings; --all looks for <model>-<recipe>
    trained.rename(models / "cnn-best.pt")
    x, y = load_split("train", data_dir=data, size=2000)
    meta = {"model": "knn", "recipe": "paper", "classes": DIGITS}
    save_classical(fit_pipeline("knn", x, y), models / "knn-paper.skops", meta, x[:50])
    monkeypatch.setattr(handwriting, "FONT_VARIANTS", 1)
    monkeypatch.setattr(handwriting, "STROKE_VARIANTS", 2)
    page = tmp_path / "handwriting.md"
    page.write_text("intro\n<!-- handwriting:start -->\nold table\n<!-- handwriting:end -->\nrest\n")
    argv = [
        "--all",
        "--checkpoint-dir",
        out / "c",
        "--device",
        "cpu",
        "--sets",
        "uci-nearest,drawn-val",
        "--results-dir",
        out / "r",
        "--update-docs",
        page,
    ]
    assert handwriting.main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    folder = out / "r" / "mnist" / "handwriting"
    cnn, knn = (json.loads((folder / f"{name}.json").read_text()) for name in ("cnn-best", "knn-paper"))
    assert set(cnn["sets"]) == {"uci-nearest", "drawn-val"} and cnn["model"] == "cnn" and knn["family"] == "classical"
    uci = cnn["sets"]["uci-nearest"]
    assert uci["n"] == 1797 and 0.2 < uci["accuracy"] <= 1  # 2 epochs on 2000 images: well above chance (0.1)
    assert set(uci["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert cnn["recipe"] == "best" and cnn["distort"] == DISTORTED["distort"]
    knn_uci = knn["sets"]["uci-nearest"]["accuracy"]
    assert 0.2 < knn_uci <= 1 and f"{100 * knn_uci:.2f}%" in printed
    rows = (folder / "table.md").read_text().splitlines()
    assert rows[0] == "| model | uci-nearest | drawn-val |" and {r.split(" | ")[0] for r in rows[2:]} == {
        "| cnn-best",
        "| knn-paper",
    }
    assert f"{100 * uci['accuracy']:.2f}%" in rows[2] + rows[3]
    generated = page.read_text()  # the docs page holds the same table between its markers, the rest untouched
    assert generated.startswith("intro\n<!-- handwriting:start -->\n`python handwriting.py --all --update-docs` on ")
    assert generated.endswith("\n\n" + (folder / "table.md").read_text() + "<!-- handwriting:end -->\nrest\n")


def test_update_docs_needs_every_model(capsys):
    """The docs table is the table of every model: --update-docs without --all is one line, before any work."""
    with pytest.raises(SystemExit) as exit_:
        handwriting.parse_args(["--update-docs"])
    assert exit_.value.code == 2
    assert "--update-docs writes the table of every model: add --all" in capsys.readouterr().err


@pytest.mark.slow
def test_a_classical_models_record_says_what_it_saw(full_mnist, tmp_path):
    """ml_main saves what a model sees (the tuned knn: HOG of deskewed digits) in the model file; handwriting.py
    copies it into its record, where report.py's paragraph on other writers' digits finds it."""
    import ml_main
    import report

    dirs = [f"--{name}-dir={tmp_path / name}" for name in ("data", "results", "plots", "checkpoint")]
    dirs[0] = f"--data-dir={full_mnist[0]}"
    assert ml_main.main(["--algo", "knn", "--train-size", "300", "--test-size", "50", "--threads", "1", *dirs]) == 0
    (saved,) = (tmp_path / "checkpoint" / "mnist").glob("knn-tuned-*.skops")
    argv = ["--checkpoint", saved, "--sets", ",".join(report.UCI_SETS), "--results-dir", tmp_path / "results"]
    assert handwriting.main([str(a) for a in argv]) == 0
    record = json.loads((tmp_path / "results" / "mnist" / "handwriting" / f"{saved.stem}.json").read_text())
    assert (record["features"], record["deskew"]) == ("hog", True)
    (score,) = report.load_handwriting(tmp_path / "results" / "mnist", [])  # no test-set record to fall back on
    mean = np.mean([record["sets"][name]["accuracy"] for name in report.UCI_SETS])
    assert (score.name, score.kind, score.accuracy) == (saved.stem, "HOG", pytest.approx(mean))


def test_cli_rejects_unknown_sets_and_missing_checkpoints(tmp_path, capsys):
    with pytest.raises(SystemExit):
        handwriting.main(["--checkpoint", "x.pt", "--sets", "mnist"])
    assert "unknown mnist" in capsys.readouterr().err
    missing = tmp_path / "none.pt"
    assert handwriting.main(["--checkpoint", str(missing), "--results-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"no model at {missing}" in err
    assert not list((tmp_path / "r").rglob("*.json"))


def test_dl_main_distort_flag(capsys):
    with pytest.raises(SystemExit):
        dl_main.make_config(["--distort", "sparkle"])
    assert "unknown distortion sparkle" in capsys.readouterr().err
    config = dl_main.make_config(["--recipe", "best"])
    assert config["augment"] > 0 and config["distort"] and config["target"] >= 0.993
    assert config["name"] == "cnn-best"
