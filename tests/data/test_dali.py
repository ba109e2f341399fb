"""``data.backend: dali``: a clear error where DALI cannot run; on a GPU with nvidia-dali,
the batches of the device-augmentation path (the same images, labels and draws)."""

import importlib.util
import sys

import pytest
import torch

from reidlab.cli import main
from reidlab.config import ConfigError, load_config
from reidlab.data.dali import check_backend


def test_dali_without_nvidia_dali_is_one_line_naming_the_key(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # import fails as if absent
    cfg = load_config(None, ["data.backend=dali"])
    with pytest.raises(ConfigError, match=r"data\.backend=dali needs NVIDIA DALI.*reidlab\[dali\]"):
        check_backend(cfg.data, torch.device("cuda"))
    check_backend(load_config(None, []).data, torch.device("cpu"))  # the default: nothing


def test_dali_on_the_cpu_stops_before_the_run_folder(tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", f"data.roots={{synthetic: {tiny_synthetic}}}", "data.synthetic.ids=12",
                 "data.backend=dali", "device=cpu", f"output_dir={out}"])
    err = [line for line in capsys.readouterr().err.splitlines() if "reidlab:" in line]
    assert code == 2 and len(err) == 1
    assert err[0].startswith("reidlab: error: data.backend=dali decodes on the GPU")
    assert not out.exists()


def test_dali_decodes_what_the_cache_would_not():
    with pytest.raises(ConfigError, match="data.backend dali"):
        load_config(None, ["data.backend=dali", "data.cache=memory"])


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("nvidia") is None
                    or importlib.util.find_spec("nvidia.dali") is None,
                    reason="needs nvidia-dali (pip install 'reidlab[dali]')")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dali_batches_are_the_device_augmentation_batches(tiny_synthetic):
    from reidlab.data.pipeline import build_train_data, load_named

    common = [f"data.roots={{synthetic: {tiny_synthetic}}}", "data.synthetic.ids=12",
              "data.height=128", "data.width=64", "data.batch_size=16", "data.num_workers=0",
              "device=cuda"]
    dali_cfg = load_config(None, [*common, "data.backend=dali"])
    ref_cfg = load_config(None, [*common, "data.augment_on=device"])
    data = [build_train_data(c, [load_named(c.data, "synthetic")]) for c in (dali_cfg, ref_cfg)]
    assert len(data[0].loader) == len(data[1].loader)
    for d in data:
        d.sampler.set_epoch(1)
    for (x, pids, camids, index), (rx, rpids, rcamids, rindex) in zip(*(d.loader for d in data),
                                                                     strict=True):
        assert torch.equal(index, torch.as_tensor(rindex))
        assert torch.equal(pids, torch.as_tensor(rpids))
        assert torch.equal(camids, torch.as_tensor(rcamids))
        assert x.shape == rx.shape and x.device.type == "cuda"
        # nvJPEG against libjpeg-turbo: a few grey levels, normalised (std ~0.22)
        assert (x - rx).abs().mean().item() < 0.03
