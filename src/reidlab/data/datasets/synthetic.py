"""The built-in synthetic dataset: procedurally rendered pedestrians in Market-1501 layout.

The images are written by :func:`reidlab.data.synthetic.generate` (on first use) and then
read by the Market-1501 parser, so the synthetic dataset exercises the same code path as
real data. Each domain (``"a"``, ``"b"``, ...) is a different rendering style, which makes
a source/target pair for domain adaptation.
"""

from __future__ import annotations

import json
from pathlib import Path

from reidlab.data.datasets.market1501 import parse_market1501
from reidlab.data.records import ReIDDataset
from reidlab.registry import DATASETS

MANIFEST = "synthetic.json"
#: Domains that are datasets of their own name (``synthetic-b``); ``synthetic`` is the
#: domain ``data.synthetic.domain`` names (``a`` by default).
NAMED_DOMAINS = ("a", "b", "c")


def synthetic_dir(root: str | Path, *, ids: int, seed: int, domain: str) -> Path:
    """The folder of one synthetic generation.

    ``root`` itself when it holds a generation (a ``synthetic.json`` manifest), else the
    subfolder ``synthetic-{domain}-{ids}ids-seed{seed}`` of ``root``, so that a data folder
    shared with real datasets never receives a Market-1501 layout at its top level, and
    generations with different settings never overwrite each other.
    """
    root = Path(root).expanduser()
    if (root / MANIFEST).is_file():
        _check_generation(root, ids=ids, seed=seed, domain=domain)
        return root
    return root / f"synthetic-{domain}-{ids}ids-seed{seed}"


def _check_generation(folder: Path, *, ids: int, seed: int, domain: str) -> None:
    """Refuse a generation folder made with other settings: generating there would replace
    the images that other runs read."""
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / MANIFEST} is not valid JSON: {err}") from None
    wanted = {"num_ids": ids, "seed": seed, "domain": domain}
    differ = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if differ:
        detail = ", ".join(f"{k} {old!r} there, {new!r} asked" for k, (old, new) in differ.items())
        raise ValueError(
            f"{folder} holds a synthetic generation with other settings ({detail}); point the "
            "dataset's root at its parent folder, or ask for the settings it was made with")


@DATASETS.register("synthetic")
def synthetic(root: str | Path, ids: int = 160, seed: int = 0, domain: str = "a") -> ReIDDataset:
    """The synthetic dataset, generated under ``root`` unless a matching one is there.

    Args:
        root: a generation's folder, or the folder to hold it (see :func:`synthetic_dir`).
        ids: identities in total, half for training and half for testing.
        seed: the random seed of the generator.
        domain: the rendering style; the records' domain is ``f"synthetic-{domain}"``.

    Returns:
        The splits as parsed by the Market-1501 parser (camera and pid ranges unchecked,
        since they depend on the generator's settings).
    """
    # Imported on use: the parsers stay importable without the renderer, and no import
    # cycle runs through reidlab.data.
    from reidlab.data import synthetic as generator

    folder = synthetic_dir(root, ids=ids, seed=seed, domain=domain)
    # ``generate`` returns at once when ``folder`` already holds this generation.
    generator.generate(folder, num_ids=ids, seed=seed, domain=domain)
    return parse_market1501(
        folder.resolve(), name=f"synthetic-{domain}", num_cameras=None, max_pid=None
    )


def _register_domain(domain: str) -> None:
    @DATASETS.register(f"synthetic-{domain}")
    def named(root: str | Path, ids: int = 160, seed: int = 0) -> ReIDDataset:
        return synthetic(root, ids=ids, seed=seed, domain=domain)

    named.__doc__ = f"The synthetic dataset of domain {domain!r} (see :func:`synthetic`)."


for _domain in NAMED_DOMAINS:
    _register_domain(_domain)
