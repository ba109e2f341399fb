"""Mixed precision (bf16 autocast on CPU, fp16 + scaler on CUDA), channels-last and
torch.compile in the training step."""

import copy
import time

import pytest
import torch

from reidlab.config import load_config
from reidlab.engine.compute import amp_settings, prepare_model
from reidlab.engine.task import build_optimizers, build_task
from reidlab.engine.trainer import make_train_step

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def batch():
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(4).repeat_interleave(2)
    return torch.randn(8, 3, 32, 16, generator=g), pids, torch.zeros_like(pids), pids


def tiny(*extra: str):
    cfg = load_config(None, ["model.backbone=resnet18", "model.width=16", "solver.lr=1e-2",
                             "solver.optimizer=sgd",  # Adam would amplify round-off
                             *extra])
    torch.manual_seed(0)
    task = build_task(cfg, 4)
    return cfg, task


@pytest.mark.parametrize(("device", "amp", "dtype", "expected"), [
    (CPU, True, "fp16", (False, torch.float16, False)),  # fp16 autocast only on CUDA
    (CPU, True, "bf16", (True, torch.bfloat16, False)),
    (CUDA, True, "fp16", (True, torch.float16, True)),  # the only case with a scaler
    (CUDA, True, "bf16", (True, torch.bfloat16, False)),
    (CUDA, False, "fp16", (False, torch.float16, False)),
])
def test_amp_settings(device, amp, dtype, expected):
    cfg = load_config(None, [f"solver.amp={str(amp).lower()}", f"solver.amp_dtype={dtype}"])
    s = amp_settings(cfg.solver, device)
    assert (s.enabled, s.dtype, s.scaled) == expected


def test_unknown_amp_dtype_is_named():
    with pytest.raises(ValueError, match="amp_dtype"):
        load_config(None, ["solver.amp_dtype=fp8"])


def _step_loss(task, cfg, **kwargs) -> tuple[float, torch.dtype]:
    seen: list[torch.dtype] = []
    hook = task.model.backbone.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = make_train_step(task, build_optimizers(cfg, task), CPU, **kwargs)(None, batch())
    hook.remove()
    return out["loss"], seen[0]


def test_bf16_autocast_on_cpu_runs_in_bf16_and_matches_float32():
    cfg, task = tiny()
    reference = copy.deepcopy(task)
    loss16, dtype16 = _step_loss(task, cfg, amp=True, amp_dtype=torch.bfloat16)
    loss32, dtype32 = _step_loss(reference, cfg)
    assert dtype16 == torch.bfloat16 and dtype32 == torch.float32
    assert loss16 == pytest.approx(loss32, rel=3e-2)  # bf16 keeps 8 bits of mantissa
    assert all(p.dtype == torch.float32 for p in task.parameters())  # master weights


def test_channels_last_gives_the_same_step():
    cfg, task = tiny("solver.channels_last=true")
    reference = copy.deepcopy(task)
    prepare_model(task.model, cfg.solver)
    conv = task.model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    loss_cl, _ = _step_loss(task, cfg, channels_last=True)
    loss, _ = _step_loss(reference, cfg)
    assert loss_cl == pytest.approx(loss, rel=1e-4)
    for a, b in zip(task.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_compile_keeps_the_module_and_its_state_keys():
    cfg, task = tiny("solver.compile=true")
    keys = list(task.model.state_dict())
    prepare_model(task.model, cfg.solver)  # lazy: nothing compiles before the first call
    assert list(task.model.state_dict()) == keys
    assert type(task.model).__name__ == "ReIDModel"


@pytest.mark.slow
def test_compiled_step_matches_eager():
    cfg, task = tiny("solver.compile=true")
    reference = copy.deepcopy(task)
    prepare_model(task.model, cfg.solver)
    start = time.perf_counter()
    loss_c, _ = _step_loss(task, cfg)
    loss_e, _ = _step_loss(reference, cfg)
    assert loss_c == pytest.approx(loss_e, rel=1e-4), f"compiled in {time.perf_counter() - start}"
    for a, b in zip(task.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_amp_step(dtype):
    cfg, task = tiny()
    task = task.cuda()
    slots = build_optimizers(cfg, task)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    step = make_train_step(task, slots, CUDA, scaler, amp=True, amp_dtype=dtype,
                           channels_last=True)
    out = step(None, batch())
    assert torch.isfinite(torch.tensor(out["loss"]))
