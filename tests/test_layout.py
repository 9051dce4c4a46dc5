import numpy as np
import pytest

from stemforge.layout import ChannelPlan


@pytest.mark.parametrize("channels,keep,groups,out", [(1, False, 1, 2), (2, False, 1, 2), (6, False, 1, 2),
                                                      (1, True, 1, 1), (2, True, 1, 2), (6, True, 3, 6), (5, True, 3, 5)])
def test_plan_shapes(channels: int, keep: bool, groups: int, out: int) -> None:
    plan = ChannelPlan(channels, 2, keep)
    x = np.random.default_rng(0).standard_normal((channels, 50)).astype(np.float32)
    model_in = plan.to_model(x)
    assert model_in.shape == (groups, 2, 50)
    stems = np.stack([model_in, 2 * model_in], axis=1)  # (groups, sources, 2, n)
    back = plan.to_file(stems)
    assert back.shape == (2, out, 50)


@pytest.mark.parametrize("channels", [1, 2, 5, 6])
def test_keep_channels_round_trips_an_identity_model(channels: int) -> None:
    plan = ChannelPlan(channels, 2, keep_channels=True)
    x = np.random.default_rng(1).standard_normal((channels, 40)).astype(np.float32)
    back = plan.to_file(plan.to_model(x)[:, None])
    np.testing.assert_allclose(back[0], x, atol=1e-6)
