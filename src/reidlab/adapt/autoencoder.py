"""The stacked autoencoder DEC embeds with, and its two-stage pretraining.

Xie, Girshick and Farhadi, "Unsupervised Deep Embedding for Clustering Analysis", ICML
2016, section 3.2: a stack of fully connected layers ``d-500-500-2000-10`` with ReLUs,
except the embedding (the last encoder layer) and the reconstruction of the input (the
last decoder layer), which are linear. It is first trained greedily, one denoising
autoencoder per layer (20% input dropout) on the previous layer's codes, then end to end
without dropout, both by mean squared reconstruction error.

Simplified here, so that it runs in a minute on a CPU: Adam (lr 1e-3) in place of the
paper's SGD (lr 0.1, divided by 10 every 20,000 iterations), and ``layer_iters`` /
``finetune_iters`` iterations (defaults 1,000 and 3,000) in place of 50,000 and 100,000.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

log = logging.getLogger("reidlab")


def _layers(dims: Sequence[int], last_linear: bool) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        mods.append(nn.Linear(a, b))
        if not (last_linear and i == len(dims) - 2):
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class StackedAutoencoder(nn.Module):
    """Encoder ``dims[0] -> ... -> dims[-1]`` and its mirror decoder.

    Args:
        dims: layer widths, input first (the paper: ``(d, 500, 500, 2000, 10)``).
    """

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        if len(dims) < 2 or any(d < 1 for d in dims):
            raise ValueError(f"StackedAutoencoder: dims must be 2 or more positive widths, "
                             f"got {list(dims)}")
        self.dims = list(dims)
        self.encoder = _layers(self.dims, last_linear=True)
        self.decoder = _layers(self.dims[::-1], last_linear=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (N, d) -> (N, dims[-1])
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, d) -> (N, d)
        return self.decoder(self.encoder(x))

    def linears(self) -> tuple[list[nn.Linear], list[nn.Linear]]:
        """Encoder linears in order, decoder linears from the innermost outwards."""
        enc = [m for m in self.encoder if isinstance(m, nn.Linear)]
        dec = [m for m in self.decoder if isinstance(m, nn.Linear)]
        return enc, dec


def _batches(n: int, batch_size: int, iters: int, gen: torch.Generator):
    for _ in range(iters):
        yield torch.randint(0, n, (min(batch_size, n),), generator=gen)


def _train(params, loss_fn, n: int, iters: int, batch_size: int, lr: float,
           gen: torch.Generator) -> float:
    opt = torch.optim.Adam(params, lr=lr)
    loss = torch.zeros(())
    for idx in _batches(n, batch_size, iters, gen):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(idx)
        loss.backward()
        opt.step()
    return float(loss.detach())


def pretrain(ae: StackedAutoencoder, x: torch.Tensor, *, layer_iters: int = 1000,
             finetune_iters: int = 3000, batch_size: int = 256, lr: float = 1e-3,
             dropout: float = 0.2, seed: int = 0) -> StackedAutoencoder:
    """Greedy layer-wise denoising pretraining, then end-to-end fine-tuning (in place).

    Args:
        ae: the autoencoder.
        x: (N, d) data.
        layer_iters: iterations per layer pair.
        finetune_iters: iterations of the whole stack.
        dropout: input dropout of each layer-wise denoising autoencoder.
        seed: seeds the batches and the dropout masks.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    enc, dec = ae.linears()
    depth = len(enc)
    codes = x
    drop = nn.Dropout(dropout)
    for i in range(depth):
        e, d = enc[i], dec[depth - 1 - i]
        inner_act = i < depth - 1  # the embedding layer stays linear
        outer_act = i > 0  # the input reconstruction stays linear

        def loss_fn(idx, e=e, d=d, inner=inner_act, outer=outer_act, data=codes):
            h = e(drop(data[idx]))
            h = torch.relu(h) if inner else h
            out = d(drop(h))
            out = torch.relu(out) if outer else out
            return nn.functional.mse_loss(out, data[idx])

        drop.train()
        loss = _train([*e.parameters(), *d.parameters()], loss_fn, len(codes),
                      layer_iters, batch_size, lr, gen)
        log.info("autoencoder layer %d/%d: reconstruction mse %.4f", i + 1, depth, loss)
        with torch.no_grad():
            codes = e(codes)
            codes = torch.relu(codes) if inner_act else codes

    def whole(idx):
        return nn.functional.mse_loss(ae(x[idx]), x[idx])

    loss = _train(ae.parameters(), whole, len(x), finetune_iters, batch_size, lr, gen)
    log.info("autoencoder fine-tuned: reconstruction mse %.4f", loss)
    return ae
