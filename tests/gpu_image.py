"""Test helper: run a script as on the lent GPU machines, whose image has PyTorch, torchvision, scikit-learn,
Pillow, tqdm and matplotlib, and not skops, scikit-image, scikit-learn-intelex or Playwright (nor pip to add
them): ``python tests/gpu_image.py SCRIPT ARGS...`` runs SCRIPT with those imports failing, so that a GPU check
which needs one of them fails here and not in the few device minutes a session gets."""

from __future__ import annotations

import runpy
import sys
from importlib.abc import MetaPathFinder
from pathlib import Path

ABSENT = ("skops", "skimage", "sklearnex", "daal4py", "playwright")


class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machines)", name=name)
        return None


def _main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.meta_path.insert(0, Absent())
    sys.argv, sys.path[0] = argv, str(Path(argv[0]).resolve().parent)  # as `python SCRIPT ARGS...` would
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    _main()
