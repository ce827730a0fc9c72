"""Attention mechanisms: registry, shapes, recorded maps and values against independent maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.attention import (
    CBAM,
    GCT,
    SRM,
    AttentionGate,
    EfficientChannelAttention,
    SelfAttention2d,
    SqueezeExcitation,
    create_attention,
    list_attention,
    recording,
)
from medattn.attention.channel import eca_kernel_size
from medattn.errors import MedattnError, ModelError

SINGLE = [n for n in list_attention() if n != "attention_gate"]


def test_registry_lists_every_mechanism() -> None:
    expected = {"se", "eca", "channel", "spatial", "cbam", "gct", "srm", "self_attention", "attention_gate"}
    assert expected <= set(list_attention())


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ModelError, match="unknown attention 'sqeeze'.*cbam.*gct"):
        create_attention("sqeeze", 16)


@pytest.mark.parametrize("name", ["se", "channel", "cbam"])
def test_reduction_must_divide_channels(name: str) -> None:
    with pytest.raises(MedattnError, match="channels=24 is not divisible by reduction=16"):
        create_attention(name, 24, reduction=16)


def test_none_is_identity() -> None:
    assert isinstance(create_attention("none", 8), torch.nn.Identity)


@pytest.mark.parametrize("name", SINGLE)
def test_shape_gradient_and_recorded_map(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 32, 6, 5, requires_grad=True)
    mod = create_attention(name, 32)
    y = mod(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    leaves = [m for m in mod.modules() if hasattr(m, "_record")]
    assert all(m.last_attention is None for m in leaves), "maps must not be kept when nobody reads them"
    with recording(mod) as mods:
        mod(x)
        for _, m in mods:
            att = m.last_attention
            assert att is not None and not att.requires_grad
            if m.attention_kind == "channel":
                assert att.shape == (2, 32)
            else:
                assert att.shape == (2, 1, 6, 5)
    assert all(m.last_attention is None for m in leaves)


def test_cbam_equals_timm_with_same_weights() -> None:
    timm_cbam = pytest.importorskip("timm.layers.cbam")
    torch.manual_seed(1)
    ours = CBAM(32, reduction=16).eval()
    ref = timm_cbam.CbamModule(32, rd_ratio=1 / 16, mlp_bias=True).eval()
    with torch.no_grad():
        for name in ("fc1", "fc2"):
            getattr(ref.channel, name).weight.copy_(getattr(ours.channel, name).weight)
            getattr(ref.channel, name).bias.copy_(getattr(ours.channel, name).bias)
        ref.spatial.conv.conv.weight.copy_(ours.spatial.conv.weight)
        bn = ref.spatial.conv.bn  # make timm's extra BatchNorm an exact identity
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    x = torch.randn(3, 32, 9, 7)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_se_matches_formula() -> None:
    torch.manual_seed(2)
    se = SqueezeExcitation(16, reduction=4)
    x = torch.randn(2, 16, 5, 5)
    z = x.mean((2, 3))
    h = torch.relu(z @ se.fc1.weight[:, :, 0, 0].T + se.fc1.bias)
    g = torch.sigmoid(h @ se.fc2.weight[:, :, 0, 0].T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * g[:, :, None, None])


def test_eca_kernel_size_and_values() -> None:
    assert [eca_kernel_size(c) for c in (64, 256, 512, 2048)] == [3, 5, 5, 7]
    torch.manual_seed(3)
    eca = EfficientChannelAttention(8, kernel_size=3)
    x = torch.randn(1, 8, 4, 4)
    z = np.pad(x.mean((2, 3))[0].numpy(), 1)
    w = eca.conv.weight.detach().numpy().ravel()
    logits = np.array([np.dot(z[c : c + 3], w) for c in range(8)])
    gate = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(eca(x).detach().numpy(), x.numpy() * gate[None, :, None, None], rtol=1e-5)


def test_gct_is_identity_at_init_and_matches_definition() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 6, 5, 4)
    gct = GCT(6)
    torch.testing.assert_close(gct(x), x)
    with torch.no_grad():
        gct.alpha.uniform_(0.5, 2)
        gct.gamma.normal_()
        gct.beta.normal_()
    xn = x.numpy().astype(np.float64)
    a, g, b = (p.detach().numpy().reshape(1, 6).astype(np.float64) for p in (gct.alpha, gct.gamma, gct.beta))
    s = a * np.sqrt((xn**2).sum((2, 3)) + 1e-5)
    s_hat = g * s / np.sqrt((s**2).mean(1, keepdims=True) + 1e-5)
    expected = xn * (1 + np.tanh(s_hat + b))[:, :, None, None]
    np.testing.assert_allclose(gct(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_srm_matches_definition_in_eval() -> None:
    torch.manual_seed(5)
    srm = SRM(4)
    with torch.no_grad():
        srm.cfc.normal_()
        srm.bn.running_mean.normal_()
        srm.bn.running_var.uniform_(0.5, 2)
        srm.bn.weight.normal_()
        srm.bn.bias.normal_()
    srm.eval()
    x = torch.randn(3, 4, 6, 6)
    xn = x.numpy().reshape(3, 4, -1).astype(np.float64)
    mu, sd = xn.mean(2), np.sqrt(xn.var(2) + 1e-5)
    w = srm.cfc.detach().numpy()
    z = mu * w[:, 0] + sd * w[:, 1]
    bn = srm.bn
    zn = (z - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps)
    zn = zn * bn.weight.detach().numpy() + bn.bias.detach().numpy()
    gate = 1 / (1 + np.exp(-zn))
    np.testing.assert_allclose(srm(x).detach().numpy(), x.numpy() * gate[:, :, None, None], rtol=1e-5, atol=1e-6)


def test_self_attention_identity_at_init_and_manual_value() -> None:
    torch.manual_seed(6)
    sa = SelfAttention2d(8, reduction=2)
    x = torch.randn(2, 8, 3, 4)
    torch.testing.assert_close(sa(x), x)
    with torch.no_grad():
        sa.gamma.fill_(0.7)
    flat = x.flatten(2)  # B×C×N

    def proj(conv: torch.nn.Conv2d) -> torch.Tensor:
        return torch.einsum("oc,bcn->bon", conv.weight[:, :, 0, 0], flat) + conv.bias[None, :, None]

    q, k, v = proj(sa.query), proj(sa.key), proj(sa.value)
    attn = torch.softmax(q.transpose(1, 2) @ k / 2.0, dim=-1)  # d = 4 → scale 1/2
    out = (v @ attn.transpose(1, 2)).reshape(2, 8, 3, 4)
    expected = x + 0.7 * out
    torch.testing.assert_close(sa(x), expected, rtol=1e-5, atol=1e-5)
    with recording(sa):
        torch.testing.assert_close(sa(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sa.last_attention, attn.mean(1).reshape(2, 1, 3, 4).detach())


def test_attention_gate_hand_computed_case() -> None:
    gate = AttentionGate(1, gating_channels=1, inter_channels=1)
    with torch.no_grad():
        gate.w_x.weight.fill_(2.0)
        gate.w_g.weight.fill_(-1.0)
        gate.w_g.bias.fill_(0.5)
        gate.psi.weight.fill_(1.5)
        gate.psi.bias.fill_(-1.0)
    x = torch.tensor([[[[1.0, -1.0], [0.5, 2.0]]]])
    g = torch.tensor([[[[0.0, 1.0], [3.0, -2.0]]]])
    # q = 1.5·relu(2x − g + 0.5) − 1: relu terms 2.5, 0, 0, 6.5
    alpha = torch.sigmoid(torch.tensor([[[[2.75, -1.0], [-1.0, 8.75]]]]))
    with recording(gate):
        out = gate(x, g)
        torch.testing.assert_close(gate.last_attention, alpha)
    torch.testing.assert_close(out, x * alpha)


def test_attention_gate_coarser_gating_signal() -> None:
    gate = create_attention("attention_gate", 16, gating_channels=32)
    x, g = torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)
    with recording(gate):
        assert gate(x, g).shape == x.shape
        assert gate.last_attention.shape == (2, 1, 8, 8)
        assert ((gate.last_attention > 0) & (gate.last_attention < 1)).all()
