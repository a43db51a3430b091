"""The GAN losses and the mode-seeking term on hand-made cases."""

import math

import pytest
import torch

from training import losses


def test_hinge_losses_on_hand_made_cases():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert losses.hinge_d(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert losses.hinge_g(fake).item() == pytest.approx(1.0)


def test_bce_losses_and_auxiliary_ramp():
    zero = torch.zeros(3)
    assert losses.bce_d(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert losses.bce_g(zero).item() == pytest.approx(math.log(2))
    labels = torch.zeros(2, 24)
    labels[:, 0] = 1
    assert losses.aux_bce(torch.zeros(2, 24), labels).item() == pytest.approx(24 * math.log(2))
    assert [losses.ramp(s, 24.0, 1000) for s in (0, 500, 1000, 5000)] == [0.0, 12.0, 24.0, 24.0]


def test_mode_seeking_term_punishes_pairs_that_ignore_the_noise():
    noise = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])  # pairs (0, 2) and (1, 3) differ by 1 per entry
    varied = torch.cat([torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5)])
    collapsed = torch.zeros(4, 3, 8, 8)
    assert losses.mode_seeking(varied, noise).item() == pytest.approx(1 / (0.5 + 1e-5))
    assert losses.mode_seeking(collapsed, noise).item() == pytest.approx(1e5)


def test_capped_mode_seeking_stops_pushing_pairs_that_already_differ_like_real_images():
    noise = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])
    images = torch.cat([torch.zeros(2, 3, 8, 8), torch.tensor([0.02, 0.5]).view(2, 1, 1, 1).expand(2, 3, 8, 8)])
    images.requires_grad_(True)
    term = losses.mode_seeking(images, noise, target=0.1)
    assert term.item() == pytest.approx((1 / (0.02 + 1e-5) + 1 / (0.1 + 1e-5)) / 2)  # pair 2 counts as 0.1
    term.backward()
    assert images.grad[1].abs().sum() == 0 and images.grad[3].abs().sum() == 0  # no push beyond the cap
    assert images.grad[0].abs().sum() > 0  # the near-collapsed pair is pushed apart


def test_mode_seeking_caps_each_pair_by_its_own_target():
    noise = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])
    images = torch.cat([torch.zeros(2, 3, 8, 8), torch.tensor([0.02, 0.5]).view(2, 1, 1, 1).expand(2, 3, 8, 8)])
    images.requires_grad_(True)
    term = losses.mode_seeking(images, noise, target=torch.tensor([0.01, 0.6]))  # pair 1 beyond its cap, pair 2 below
    assert term.item() == pytest.approx((1 / (0.01 + 1e-5) + 1 / (0.5 + 1e-5)) / 2)
    term.backward()
    assert images.grad[0].abs().sum() == 0 and images.grad[2].abs().sum() == 0  # pair 1: no push past 0.01
    assert images.grad[1].abs().sum() > 0  # pair 2 is still pushed apart


def test_a_pair_capped_at_zero_pays_no_mode_seeking_term():
    noise = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])
    images = torch.cat([torch.zeros(2, 3, 8, 8), torch.tensor([0.0, 0.5]).view(2, 1, 1, 1).expand(2, 3, 8, 8)])
    images.requires_grad_(True)
    term = losses.mode_seeking(images, noise, target=torch.tensor([0.0, 0.6]))  # pair 1 collapsed but left out
    assert term.item() == pytest.approx(1 / (0.5 + 1e-5))  # the mean over the kept pair alone
    term.backward()
    assert images.grad[0].abs().sum() == 0 and images.grad[2].abs().sum() == 0 and images.grad[1].abs().sum() > 0
    none = losses.mode_seeking(images, noise, target=torch.zeros(2))
    assert none.item() == 0  # no pair kept: no term


def test_gradient_penalty_of_a_linear_critic():
    w = torch.randn(1, 3, 4, 4)
    critic = lambda x: (x * w).flatten(1).sum(1)  # gradient w.r.t. x is w everywhere
    gp = losses.gradient_penalty(critic, torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4))
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def test_a_low_resolution_guide_is_blind_to_texture_finer_than_its_pixels():
    """At resolution 32 the guide sees 2x2 area means: a +-1 checkerboard added to an image (the texture a
    generator can use to fool a full-size classifier) leaves its logits unchanged; at full size it does not."""
    from training.guide import GuideClassifier

    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64) * 2 - 1  # [2, 3, 64, 64]
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 * 2 - 1).float()  # [64, 64] of +-1
    for resolution, blind in ((32, True), (0, False)):
        guide = GuideClassifier(24, width=4, resolution=resolution).eval()
        with torch.no_grad():
            moved = (guide(image + 0.5 * checker) - guide(image)).abs().max().item()
        assert (moved < 1e-5) is blind, (resolution, moved)
