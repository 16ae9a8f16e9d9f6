"""Optimizers and learning-rate schedulers, as in ``torch.optim``.

Each optimizer updates each parameter with ONE fused call into Rust
(``_core.sgd_step``, ``_core.adam_step``, ``_core.rmsprop_step``), in place on the parameter
and its state buffers, following PyTorch's documented algorithms.
"""

from ferrograd.optim import lr_scheduler
from ferrograd.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from ferrograd.optim.optimizer import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "Optimizer",
    "RMSprop",
    "StepLR",
    "lr_scheduler",
]
