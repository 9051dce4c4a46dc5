import torch
from torch import nn

from stemforge.train.ema import EMA


def test_ema_follows_closed_form():
    model = nn.Linear(3, 2)
    start = model.weight.detach().clone()
    ema = EMA(model, decay=0.9, warmup=False)
    values = [torch.full_like(start, float(v)) for v in (1.0, 2.0, 4.0)]
    expected = start.clone()
    for value in values:
        with torch.no_grad():
            model.weight.copy_(value)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * value
    assert torch.allclose(ema.module.weight, expected, atol=1e-6)
    assert not ema.module.weight.requires_grad


def test_ema_warmup_and_state_round_trip():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == 0.1  # (1 + 0) / (10 + 0): the first update mostly copies the weights
    for _ in range(5):
        ema.update(model)
    other = EMA(nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 5 and other.decay == 0.999
    assert torch.equal(other.module.weight, ema.module.weight)
