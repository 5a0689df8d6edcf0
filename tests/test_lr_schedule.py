"""The learning-rate schedule is pl_bolts' ``LinearWarmupCosineAnnealingLR`` (0.7.0, the original's), epoch by
epoch, for warm-up lengths 0, 1 and the published 10 and 30, with two parameter groups of their own base rates."""

from __future__ import annotations

import math

import pytest
import torch

from pointjepa.utils.optim import warmup_cosine_schedule

BASE_LRS = (1e-3, 2e-4)


def pl_bolts_lr(epoch: int, warmup: int, epochs: int, start: float, base: float, eta_min: float) -> float:
    """The rate pl_bolts' chained ``get_lr`` reaches at ``epoch`` (one ``step()`` per epoch), in closed form:
    its epoch 0 is ``warmup_start_lr`` for every warm-up; epochs 1..W-1 add (base - start) / (W - 1) each;
    epoch W is the base rate; after it each epoch scales (lr - eta_min) by
    (1 + cos(pi (e - W) / (E - W))) / (1 + cos(pi (e - W - 1) / (E - W))), so the cosine continues from the
    rate it starts from: from the base rate for W >= 1, from ``warmup_start_lr`` (epoch 0) for W = 0."""
    if epoch == 0:
        return start
    if epoch < warmup:
        return start + epoch * (base - start) / (warmup - 1)
    top = base if warmup >= 1 else start
    return eta_min + (top - eta_min) * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))) / 2


def run_schedule(warmup: int, epochs: int, start: float, eta_min: float) -> list[tuple[float, ...]]:
    """Each epoch's rates of both groups, stepping once per epoch as Lightning does (``interval: epoch``)."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    optimizer = torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS)])
    scheduler = warmup_cosine_schedule(optimizer, warmup, epochs, start, eta_min)
    rates = []
    for _ in range(epochs):
        rates.append(tuple(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        scheduler.step()
    return rates


#: (warm-up, epochs, warmup_start_lr, eta_min) -> rates of both groups that pl_bolts 0.7.0 itself gave at
#: some epochs (run once with the original's pin, not a dependency here).
PL_BOLTS_RATES = {
    (0, 15, 1e-5, 1e-6): {1: (9.9016642033e-06,) * 2, 7: (5.9703780847e-06,) * 2, 14: (1.0983357967e-06,) * 2},
    (1, 15, 1e-5, 1e-6): {0: (1e-05, 1e-05), 1: (1e-3, 2e-4), 2: (9.87476492135e-4, 1.97505327262e-4)},
    (10, 300, 1e-6, 1e-6): {1: (1.12e-4, 2.31111111111e-05), 9: (1e-3, 2e-4), 11: (9.9997069073e-4, 1.99994161617e-4)},
    (30, 500, 1e-5, 1e-6): {
        2: (7.8275862069e-05, 2.31034482759e-05),
        30: (1e-3, 2e-4),
        250: (5.50497797966e-4, 1.10459521317e-4),
    },
}


@pytest.mark.parametrize("setting", sorted(PL_BOLTS_RATES))
def test_schedule_is_pl_bolts_epoch_by_epoch(setting):
    warmup, epochs, start, eta_min = setting
    rates = run_schedule(warmup, epochs, start, eta_min)
    for epoch, got in enumerate(rates):
        expected = [pl_bolts_lr(epoch, warmup, epochs, start, base, eta_min) for base in BASE_LRS]
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-18), epoch
    for epoch, expected in PL_BOLTS_RATES[setting].items():
        assert rates[epoch] == pytest.approx(expected, rel=1e-10)


def test_warmup_of_one_epoch_runs_epoch_0_at_the_start_rate_as_the_demo_config():
    rates = [r[0] for r in run_schedule(1, 15, 1e-5, 1e-6)]  # configs/demo/classification.yaml
    assert rates[0] == pytest.approx(1e-5) and rates[1] == pytest.approx(1e-3)  # then a cosine over 14 epochs
    assert rates[-1] == pytest.approx(1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * 13 / 14)) / 2)


def test_no_warmup_anneals_from_the_start_rate_and_never_reaches_the_base_rate():
    rates = [r[0] for r in run_schedule(0, 20, 1e-5, 1e-6)]
    assert rates[0] == pytest.approx(1e-5) and max(rates) == rates[0]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    same = [r[0] for r in run_schedule(0, 20, 1e-3, 1e-6)]  # warmup_start_lr = the rate: a plain cosine
    assert same[0] == pytest.approx(1e-3) and same[10] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)


def test_schedule_refuses_bad_settings():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match="warmup_epochs"):
        warmup_cosine_schedule(optimizer, -1, 10, 1e-5, 1e-6)
    with pytest.raises(ValueError, match="positive learning rates"):
        warmup_cosine_schedule(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.0), 2, 10, 1e-5, 0.0)
