"""vaekit's Adam (and AdamW) against torch.optim's fused kernels, its skip flag, and its state."""

import pytest
import torch
from torch import nn

from vaekit.optim import Adam


def net_and_batches(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    batches = [(torch.randn(8, 6), torch.randn(8, 3)) for _ in range(6)]
    return net, batches


def fit(net, opt, batches, lrs, found_inf=None):
    for (x, y), lr in zip(batches, lrs):
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        if found_inf is None:
            opt.step()
        else:
            opt.step(found_inf=found_inf)


def test_matches_torch_fused_adam():
    lrs = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2, 3e-3]
    ours, batches = net_and_batches()
    theirs, _ = net_and_batches()
    fit(ours, Adam(ours.parameters()), batches, lrs)
    fit(theirs, torch.optim.Adam(theirs.parameters(), fused=True), batches, lrs)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert any((a - b).abs().sum() > 0 for a, b in zip(ours.parameters(), net_and_batches()[0].parameters()))


def test_weight_decay_matches_torch_fused_adamw():
    lrs = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2, 3e-3]
    ours, batches = net_and_batches()
    theirs, _ = net_and_batches()
    plain, _ = net_and_batches()
    fit(ours, Adam(ours.parameters(), weight_decay=0.1), batches, lrs)
    fit(theirs, torch.optim.AdamW(theirs.parameters(), weight_decay=0.1, fused=True), batches, lrs)
    fit(plain, Adam(plain.parameters()), batches, lrs)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # decoupled decay shrinks the weights relative to plain Adam
    assert sum(a.norm() for a in ours.parameters()) < sum(b.norm() for b in plain.parameters())


def test_found_inf_skips_the_whole_update():
    net, batches = net_and_batches()
    opt = Adam(net.parameters())
    fit(net, opt, batches[:2], [1e-2] * 2)
    before = [p.clone() for p in net.parameters()], [m.clone() for m in opt.exp_avg], opt.steps.item()
    fit(net, opt, batches[2:4], [1e-2] * 2, found_inf=torch.ones(()))
    assert opt.steps.item() == before[2] == 2
    for a, b in zip([*net.parameters(), *opt.exp_avg], [*before[0], *before[1]]):
        assert torch.equal(a, b)
    fit(net, opt, batches[4:], [1e-2] * 2, found_inf=torch.zeros(()))
    assert opt.steps.item() == 4 and not torch.equal(next(net.parameters()), before[0][0])


def test_state_dict_resumes_exactly():
    lrs = [1e-2] * 6
    whole, batches = net_and_batches()
    fit(whole, Adam(whole.parameters()), batches, lrs)
    half, _ = net_and_batches()
    opt = Adam(half.parameters())
    fit(half, opt, batches[:3], lrs)
    state = {k: v for k, v in half.state_dict().items()}, opt.state_dict()
    resumed, _ = net_and_batches(seed=1)
    resumed.load_state_dict(state[0])
    opt2 = Adam(resumed.parameters(), lr=0.5)
    opt2.load_state_dict(state[1])
    assert opt2.param_groups[0]["lr"] == 1e-2 and opt2.steps.item() == 3
    fit(resumed, opt2, batches[3:], lrs)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_load_rejects_state_of_another_model():
    net, _ = net_and_batches()
    sd = Adam(net.parameters()).state_dict()
    other = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="shape"):
        Adam(other.parameters()).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameters"):
        Adam(nn.Linear(6, 5).parameters()).load_state_dict(sd)
