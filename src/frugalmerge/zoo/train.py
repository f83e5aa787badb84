"""A small, deterministic training loop for the zoo's tiny Llama models (1 thread, fixed data
order, seeded initialisation and sampling)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from frugalmerge.zoo.data import ExampleStream


class TrainSpec(BaseModel):
    """Optimisation settings of one training run."""

    model_config = ConfigDict(frozen=True)

    steps: int = Field(gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1)
    final_lr_fraction: float = Field(default=0.1, ge=0, le=1)
    #: Zero: unused embedding rows would otherwise decay and show up in task vectors.
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)


@dataclass(frozen=True)
class TrainResult:
    """What a training run reports."""

    final_loss: float
    seconds: float


def lr_factor(step: int, spec: TrainSpec) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` of the peak."""
    warmup = max(1, int(spec.steps * spec.warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, spec.steps - warmup)
    floor = spec.final_lr_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train(model, stream: ExampleStream, spec: TrainSpec, seed: int,
          on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``stream`` for ``spec.steps`` steps.

    The loss is the mean cross-entropy over the tokens whose weight is 1 (BOS, padding and, for
    reading-only examples, the result tokens are excluded).
    """
    import torch

    torch.manual_seed(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]  # frozen ones stay bit-exact
    optimizer = torch.optim.AdamW(params, lr=spec.lr, betas=(0.9, 0.98),
                                  weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, spec))
    start = time.perf_counter()
    ema = None
    for step in range(spec.steps):
        input_ids, mask, weights = stream.next_batch(spec.batch_size)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        # Position t predicts token t+1; its weight is the weight of token t+1.
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1),
            reduction="none",
        )
        w = weights[:, 1:].reshape(-1)
        loss = (losses * w).sum() / w.sum().clamp_min(1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if on_step is not None:
            on_step(step, ema)
    model.eval()
    return TrainResult(final_loss=float(ema or 0.0), seconds=time.perf_counter() - start)
