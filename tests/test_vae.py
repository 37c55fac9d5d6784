import itertools
import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.config import ModelConfig, TrainConfig
from vaekit.likelihoods import LIKELIHOODS
from vaekit.objectives import OBJECTIVES, kl_term
from vaekit.priors import PRIORS
from vaekit.vae import VAE
from vaekit.errors import VaekitError

from conftest import image_vae

SHAPES = {"mlp": (1, 8, 8), "conv": (3, 12, 8)}  # the core's dense net and the image kind's conv net
NETS = list(SHAPES)


@pytest.mark.parametrize("net,likelihood,prior,objective",
                         list(itertools.product(NETS, LIKELIHOODS, PRIORS, OBJECTIVES)))
def test_every_component_trains(net, likelihood, prior, objective):
    """Contract: shapes, finite per-example terms, gradients reaching every parameter."""
    torch.manual_seed(0)
    shape = SHAPES[net]
    vae = image_vae(ModelConfig(net=net, likelihood=likelihood, prior=prior, latent_dim=3, hidden=[16],
                                prior_components=4), shape)
    x = (torch.rand(5, *shape) * 255).round() / 255  # 8-bit values, valid for every likelihood
    qz_x = vae.encode(x)
    assert qz_x.batch_shape == (5,) and qz_x.event_shape == (3,)
    px_z = vae.decode(qz_x.rsample())
    assert px_z.batch_shape == (5,) and px_z.event_shape == shape
    terms = OBJECTIVES[objective](TrainConfig(iw_samples=3))(vae, x, 1.0)
    for t in terms:
        assert t.shape == (5,) and torch.isfinite(t).all()
    if prior == "normal" and objective == "elbo":
        assert (terms.kl >= 0).all()  # analytic; the Monte Carlo estimates can dip below 0
    terms.loss.mean().backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    samples = vae.sample(7)
    assert samples.shape == (7, *shape)


def test_analytic_kl_matches_monte_carlo_and_the_formula():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6) * 0.5
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros(6), torch.ones(6)), 1)
    analytic = kl_term(q, p, None)
    formula = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)  # Kingma & Welling, App. B
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(analytic, formula)
    torch.testing.assert_close(analytic, monte_carlo, rtol=0.02, atol=0.02)
    # Against any diagonal Gaussian prior, the same as torch's own KL.
    p = Independent(Normal(torch.randn(6), torch.rand(6) + 0.5), 1)
    torch.testing.assert_close(kl_term(q, p, None), kl_divergence(q, p))


def test_bernoulli_recon_is_summed_binary_cross_entropy():
    torch.manual_seed(0)
    vae = VAE(ModelConfig(latent_dim=2, hidden=[8]), (1, 4, 4))
    x = torch.rand(3, 1, 4, 4)
    z = torch.randn(3, 2)
    logits = vae.decoder(z)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(-vae.decode(z).log_prob(x), expected)


def test_gaussian_recon_is_in_nats():
    vae = VAE(ModelConfig(likelihood="gaussian", sigma=0.5, latent_dim=2, hidden=[8]), (1, 2, 2))
    z = torch.zeros(1, 2)
    mean = vae.decoder(z)
    x = mean + 0.5  # one sigma away in every one of 4 pixels
    expected = 4 * (0.5 * math.log(2 * math.pi * 0.25) + 0.5)
    assert -vae.decode(z).log_prob(x).item() == pytest.approx(expected, rel=1e-5)


def test_conv_needs_sides_divisible_by_four():
    with pytest.raises(VaekitError, match="divisible by 4"):
        image_vae(ModelConfig(net="conv"), (1, 10, 10))
    with pytest.raises(VaekitError, match="unknown network 'conv'"):  # the core's nets are dense only
        VAE(ModelConfig(net="conv"), (1, 8, 8))


def test_unknown_component_names_the_choices():
    with pytest.raises(VaekitError, match="unknown prior 'flow'"):
        VAE(ModelConfig(prior="flow"), (1, 8, 8))


@pytest.mark.parametrize("net", list(NETS))
def test_posterior_init_std_sets_the_starting_spread(net):
    shape = SHAPES[net]
    x = torch.rand(64, *shape)
    torch.manual_seed(0)
    default = image_vae(ModelConfig(net=net, latent_dim=3, hidden=[16]), shape).encode(x).base_dist.scale
    torch.manual_seed(0)
    small = image_vae(ModelConfig(net=net, latent_dim=3, hidden=[16], posterior_init_std=0.05), shape).encode(x).base_dist.scale
    assert 0.5 < default.median() < 2 and 0.03 < small.median() < 0.08
    with pytest.raises(VaekitError, match="posterior_init_std"):
        ModelConfig(posterior_init_std=-1.0)


def test_linear_gaussian_vae_recovers_probabilistic_pca(tmp_path, digits):
    """Tipping & Bishop (1999); Lucas et al. (2019): a linear VAE with a Gaussian likelihood has
    pPCA's maximum-likelihood solution as its optimum, where the ELBO is tight."""
    import math

    import scipy.linalg

    import vaekit
    from vaekit.config import Config
    from vaekit.metrics import evaluate_terms

    x = digits.train_x.flatten(1).double()  # (N, 64)
    k = 4
    mean = x.mean(0)
    evals, evecs = torch.linalg.eigh((x - mean).T @ (x - mean) / len(x))
    evals, evecs = evals.flip(0), evecs.flip(1)
    sigma2 = evals[k:].mean()  # pPCA's maximum-likelihood noise: the mean discarded eigenvalue
    w = evecs[:, :k] * (evals[:k] - sigma2).sqrt()
    exact = torch.distributions.MultivariateNormal(mean, w @ w.T + sigma2 * torch.eye(64, dtype=torch.float64))
    log_likelihood = exact.log_prob(x).mean().item()

    cfg = Config()
    cfg.model.hidden, cfg.model.latent_dim, cfg.model.likelihood = [], k, "gaussian"
    cfg.model.sigma = math.sqrt(sigma2.item())
    cfg.train.epochs, cfg.train.lr, cfg.train.batch_size, cfg.train.precision = 300, 0.1, 512, "fp32"
    vae = vaekit.train(cfg, tmp_path / "run", data=digits, progress=False)
    from sklearn.decomposition import PCA

    decoder_columns = vae.decoder.net[0].weight.detach().double().T  # (64, k): W stored (in, out)
    angles = scipy.linalg.subspace_angles(decoder_columns.numpy(), PCA(k).fit(x.numpy()).components_.T)
    assert max(angles) < math.radians(3), angles
    elbo = -evaluate_terms(vae, digits.train_x, num_samples=20).loss.double().mean().item()
    assert 0 < log_likelihood - elbo < 0.3, (log_likelihood, elbo)
