"""Math tested against math: IWAE against the ELBO, bounds against an exact likelihood, the
discretized logistic against its normalisation, free bits against their definition."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

import vaekit
from vaekit.config import ModelConfig
from vaekit.likelihoods import DiscretizedLogistic
from vaekit.metrics import estimate_nll, evaluate, latent_diagnostics
from vaekit.objectives import elbo, iwae, kl_per_dim, log_weights

from conftest import small_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    cfg = small_config(epochs=15, lr=3e-3)
    cfg.model.hidden, cfg.model.latent_dim = [128], 8
    return vaekit.train(cfg, tmp_path_factory.mktemp("obj") / "run", data=digits, progress=False)


def test_iwae_with_one_sample_is_the_elbo_on_the_same_sample(trained, digits):
    x = digits.test_x[:64]
    torch.manual_seed(5)
    bound = -iwae(trained, x, num_samples=1).loss
    torch.manual_seed(5)
    qz_x = trained.encode(x)
    z = qz_x.rsample()
    same_sample_elbo = trained.decode(z).log_prob(x) + trained.pz().log_prob(z) - qz_x.log_prob(z)
    torch.testing.assert_close(bound, same_sample_elbo)
    # and in expectation it is the analytic-KL ELBO the trainer uses
    torch.manual_seed(0)
    many = torch.stack([-iwae(trained, x, num_samples=1).loss.mean() for _ in range(200)]).mean()
    analytic = torch.stack([-elbo(trained, x).loss.mean() for _ in range(200)]).mean()
    assert many.item() == pytest.approx(analytic.item(), abs=0.3)


def test_the_importance_weighted_bound_rises_with_k(trained, digits):
    x = digits.test_x[:200]
    nll = {k: estimate_nll(trained, x, num_samples=k, seed=1).mean().item() for k in (1, 10, 100, 1000)}
    assert nll[1] > nll[10] > nll[100] > nll[1000]
    neg_elbo = vaekit.evaluate_elbo(trained, x)["neg_elbo"]
    assert nll[1] == pytest.approx(neg_elbo, abs=1.0)


class LinearDecoder(nn.Module):
    def __init__(self, latent, dim):
        super().__init__()
        self.lin = nn.Linear(latent, dim)

    def forward(self, z, c=None):
        return self.lin(z).view(-1, 1, 1, self.lin.out_features)


def test_bounds_against_the_exact_likelihood_of_a_linear_gaussian_model():
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I) => p(x) = N(b, W W^T + s^2 I), exactly."""
    torch.manual_seed(0)
    dim, latent, s = 6, 2, 0.5
    vae = vaekit.VAE(ModelConfig(likelihood="gaussian", sigma=s, latent_dim=latent, hidden=[16]), (1, 1, dim))
    vae.decoder = LinearDecoder(latent, dim)
    # q(z|x) = N(0, I): a poor but honest proposal that covers the true posterior everywhere.
    last = vae.encoder.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    W, b = vae.decoder.lin.weight.detach(), vae.decoder.lin.bias.detach()
    x = (torch.randn(50, latent) @ W.T + b + s * torch.randn(50, dim)).view(50, 1, 1, dim)
    exact = MultivariateNormal(b, W @ W.T + s**2 * torch.eye(dim)).log_prob(x.view(50, dim)).mean().item()

    def bound(k, repeats):  # L_k = E[log 1/k sum_i w_i], averaged over repeats and examples
        with torch.no_grad():
            log_px_z, log_pz, log_qz = log_weights(vae, x, k * repeats)
        log_w = (log_px_z + log_pz - log_qz).view(repeats, k, -1)
        return (torch.logsumexp(log_w, dim=1) - math.log(k)).mean().item()

    torch.manual_seed(1)
    l1, l10, l100 = bound(1, 2000), bound(10, 500), bound(100, 50)
    l5000 = -estimate_nll(vae, x, num_samples=5000, seed=2).mean().item()
    assert l1 < l10 < l100 < l5000 < exact + 0.02  # ELBO <= IW bounds, rising with K, <= exact
    assert exact - l1 > 1.0  # a loose ELBO here...
    assert exact - l5000 < 0.05 * (exact - l1)  # ...whose gap the K = 5000 estimate all but closes


def test_discretized_logistic_sums_to_one_over_the_256_levels():
    loc = torch.tensor([0.0, 0.3, 0.5, 0.999])
    log_scale = torch.tensor([-3.0, -5.0, -1.0, -4.0])
    levels = torch.arange(256.0) / 255
    d = DiscretizedLogistic(loc[None].expand(256, 4), log_scale[None].expand(256, 4))
    total = d.log_prob(levels[:, None].expand(256, 4)).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(4), atol=1e-3, rtol=0)


def test_free_bits_penalise_only_kl_above_the_floor(trained, digits):
    x = digits.test_x[:32]
    torch.manual_seed(3)
    t = elbo(trained, x, free_bits=0.5)
    torch.manual_seed(3)
    qz_x = trained.encode(x)
    per_dim = kl_per_dim(qz_x, trained.pz())
    torch.testing.assert_close(t.kl, per_dim.sum(-1))
    torch.testing.assert_close(t.loss, t.recon + per_dim.clamp(min=0.5).sum(-1))


def test_evaluate_reports_the_literature_figures(trained, digits):
    r = evaluate(trained, digits.test_x, iw_samples=200)
    assert r["iw_samples"] == 200 and r["nll"] < r["neg_elbo"]
    assert r["bits_per_dim"] == pytest.approx(r["nll"] / (64 * math.log(2)))
    assert len(r["kl_per_dim"]) == 8 and sum(r["kl_per_dim"]) == pytest.approx(r["kl"], rel=0.05)
    assert 1 <= r["active_units"] <= 8
    diag = latent_diagnostics(trained, digits.test_x)
    assert diag["active_units"] == sum(a > 0.01 for a in diag["activity"])
    # the unit that varies most across the data carries more KL than the one that varies least
    act, kl = torch.tensor(diag["activity"]), torch.tensor(diag["kl_per_dim"])
    assert kl[act.argmax()] > kl[act.argmin()]


def test_log_weights_shapes(trained, digits):
    a, b, c = log_weights(trained, digits.test_x[:7], 3)
    assert a.shape == b.shape == c.shape == (3, 7)


def test_sample_quality_distance_ranks_real_trained_untrained(trained, digits):
    from vaekit.kinds.image import quality

    net = quality.train_feature_net(digits.train_x, digits.train_y)
    reference = quality.feature_stats(net, digits.train_x)
    n = len(digits.test_x)
    g = torch.Generator().manual_seed(0)
    untrained = vaekit.VAE(trained.cfg, trained.x_shape)
    real = quality.frechet_distance(quality.feature_stats(net, digits.test_x), reference)
    good = quality.frechet_distance(quality.feature_stats(net, trained.sample(n, generator=g)), reference)
    bad = quality.frechet_distance(quality.feature_stats(net, untrained.sample(n, generator=g)), reference)
    assert real < good / 2 and good < bad / 2, (real, good, bad)


def test_two_stochastic_layers_train_and_their_bounds_order(tmp_path, digits):
    cfg = small_config(epochs=15, lr=3e-3, kl_warmup_epochs=5)
    cfg.model.hidden, cfg.model.latent_dim = [128], 8
    cfg.model.prior, cfg.model.top_latent_dim, cfg.model.top_hidden = "hierarchical", 4, [32]
    vae = vaekit.train(cfg, tmp_path / "run", data=digits, progress=False)
    records = vaekit.checkpoint.read_metrics(tmp_path / "run")
    assert records[-1]["val_neg_elbo"] < records[0]["val_neg_elbo"] - 1
    x = digits.test_x[:200]
    nll = {k: estimate_nll(vae, x, num_samples=k, seed=1).mean().item() for k in (1, 30, 300)}
    assert nll[1] > nll[30] > nll[300]
    assert vaekit.load(tmp_path / "run").sample(5).shape == (5, 1, 8, 8)


def test_mixture_prior_density_matches_the_direct_sum_over_components():
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal
    from vaekit.priors import DiagonalMixture

    gen = torch.Generator().manual_seed(0)
    logits, loc = torch.randn(30, generator=gen), torch.randn(30, 6, generator=gen) * 2 + 1
    scale = torch.rand(30, 6, generator=gen) * 0.9 + 0.05
    exact = MixtureSameFamily(Categorical(logits=logits.double()), Independent(Normal(loc.double(), scale.double()), 1))
    near = loc[:10] + scale[:10] * torch.randn(4, 10, 6, generator=gen)  # (4, 10, D): leading axes kept
    for z in (torch.randn(3, 7, 6, generator=gen) * 3, near):
        fast = DiagonalMixture(logits, loc, scale).log_prob(z)
        assert fast.shape == z.shape[:-1] and fast.dtype == torch.float32
        torch.testing.assert_close(fast.double(), exact.log_prob(z.double()), atol=2e-3, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the expansion must not run in bf16
        torch.testing.assert_close(DiagonalMixture(logits, loc, scale).log_prob(near).double(),
                                   exact.log_prob(near.double()), atol=2e-3, rtol=1e-5)


def test_bernoulli_image_scores_binary_and_grey_targets_like_torch():
    from torch.distributions import Bernoulli, Independent
    from vaekit.likelihoods import BernoulliImage

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, 1, 6, 6, generator=gen) * 8  # (K, B, C, H, W), saturated logits too
    for x in ((torch.rand(4, 1, 6, 6, generator=gen) > 0.5).float(), torch.rand(4, 1, 6, 6, generator=gen)):
        ours = BernoulliImage(logits).log_prob(x)
        assert ours.shape == (5, 4)
        torch.testing.assert_close(ours, Independent(Bernoulli(logits=logits, validate_args=False), 3).log_prob(x),
                                   atol=1e-4, rtol=1e-6)
    draws = BernoulliImage(logits).sample((3,))
    assert draws.shape == (3, 5, 4, 1, 6, 6) and set(draws.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(BernoulliImage(logits).mean, torch.sigmoid(logits))
