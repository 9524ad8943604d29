"""Every settings family (``--recipe``) by name, defined once, and the networks' recipes as data.

The networks' recipes start from the published settings (PAPER); a recipe overrides some of them and flags given
explicitly override the recipe. Each was chosen on validation accuracy alone (``--val-size 10000``: 10000
training images held out, the test set untouched); its target (final model, full test set) is checked after.
How each was chosen: docs/recipes.md. The classical models' settings live beside their Pipelines in Classifier.py.
This module imports nothing, so that --help, predict.py and the page can name every recipe without torch.
"""

from __future__ import annotations

# The model names of Network.MODELS and Classifier.REGISTRY (a test keeps them in step).
NETWORKS = ("cnn", "mlp")
CLASSICAL = ("svm", "knn", "dt", "logreg", "pca-svm", "rf", "gb", "sk-mlp")
BENCHMARK_ONLY = ("gb", "sk-mlp")  # the Fashion-MNIST benchmark's models: used when saved, never listed as missing

# The families, each family's first one its default: what dl_main.py and ml_main.py accept for --recipe.
NETWORK_RECIPES = ("paper", "fast", "best", "gpu")
CLASSICAL_RECIPES = ("tuned", "paper", "benchmark")
# The saved model that predict.py, handwriting.py and the page pick for a bare --model, when several are trained.
PREFERRED = {"network": ("best", "gpu", "fast", "paper"), "classical": ("tuned", "paper", "benchmark")}

RECIPE_HELP = {
    "paper": "the write-up's published settings (networks: 20 epochs, batch 30, SGD lr 0.01; classical: "
    "plain scikit-learn defaults)",
    "fast": "networks: time to 99%: Adam, one-cycle, batch 128, bfloat16 where native, 2 epochs (cnn: width 16, "
    "strided stem)",
    "best": "networks: highest accuracy, also on other writers' digits: augmentation with the distortions of "
    "other pens and scans, 40 epochs (cnn) / 30 (mlp)",
    "gpu": "cnn: time to 99% on a GPU: batch 512, 3 epochs",
    "tuned": "classical: chosen on a validation split for the dataset (default)",
    "benchmark": "classical: the Fashion-MNIST benchmark's settings (Xiao et al. 2017): StandardScaler, then its "
    "best setting per model",
}

# ---------------------------------------------------------------- the networks' recipes
PAPER = {"epochs": 20, "batch_size": 30, "lr": 0.01, "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0,
         "schedule": "constant", "hidden_size": 196, "width": 32, "stem": "pool", "dropout": 0.5,
         "label_smoothing": 0.0, "augment": 0.0, "distort": "", "amp": False, "eval_every": 1000,
         "target": None}  # fmt: skip
FAST = {"optimizer": "adam", "schedule": "onecycle", "amp": "auto", "batch_size": 128, "eval_every": 0}
# Affine augmentation plus the distortions of other writers and scans (mnistlab/augment.py), at strength 0.6.
DISTORTED = {**FAST, "augment": 0.6, "distort": "shear,elastic,width,blocky,blur,gamma", "eval_every": 2000}
RECIPES = {
    "paper": {"mlp": {"target": 0.9386}, "cnn": {"target": 0.9886}},
    "fast": {
        "mlp": {**FAST, "epochs": 3, "lr": 3e-3, "hidden_size": 512, "dropout": 0.2},
        "cnn": {**FAST, "epochs": 2, "lr": 8e-3, "stem": "stride", "width": 16, "dropout": 0.1,
                "label_smoothing": 0.1, "target": 0.990},
    },
    "best": {
        "mlp": {**DISTORTED, "epochs": 30, "lr": 2e-3, "hidden_size": 1024, "dropout": 0.3, "target": 0.98},
        "cnn": {**DISTORTED, "epochs": 40, "lr": 4e-3, "dropout": 0.0, "label_smoothing": 0.1, "target": 0.996},
    },
    "gpu": {
        "cnn": {**FAST, "epochs": 3, "batch_size": 512, "lr": 1e-2, "dropout": 0.1, "label_smoothing": 0.1,
                "target": 0.990},
    },
}  # fmt: skip
# Another dataset's changes to a recipe, chosen on that dataset's validation split, with its own targets (the
# targets above are MNIST's); datasets not listed here take the recipes as they are, with no target.
DATASET_RECIPES = {
    "fashion-mnist": {
        "fast": {"cnn": {"stem": "pool", "lr": 6e-3, "epochs": 3, "target": 0.92}},
        "best": {"cnn": {"epochs": 50, "dropout": 0.3, "augment": 1.0, "distort": "flip", "target": 0.945}},
    },
}


def network_settings(model: str, recipe: str, dataset: str = "mnist") -> dict:
    """Every training setting of ``model`` under ``recipe`` on ``dataset``: PAPER, then the recipe's changes."""
    if model not in RECIPES[recipe]:
        has = [r for r in NETWORK_RECIPES if model in RECIPES[r]]
        raise ValueError(f"--recipe {recipe} has no {model} settings; use --recipe {' or '.join(has)}")
    config = {**PAPER, **RECIPES[recipe][model]}
    if dataset != "mnist":  # another dataset: its own changes and targets, or none
        config.update({"target": None, **DATASET_RECIPES.get(dataset, {}).get(recipe, {}).get(model, {})})
    return config
