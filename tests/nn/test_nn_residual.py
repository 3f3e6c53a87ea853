"""SEW residual blocks: the connect functions' truth tables, identity mapping, state threading."""

import itertools

import pytest
import torch
from torch import nn

from snn5.nn import LIF, Sequential, TimeDistributed
from snn5.nn.residual import Connect, SEWBlock, connect

# (A = residual branch spike, S = shortcut spike) -> g(A, S), Fang et al. 2021, Table 1
TRUTH = {
    Connect.ADD: {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2},
    Connect.AND: {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1},
    Connect.IAND: {(0, 0): 0, (0, 1): 1, (1, 0): 0, (1, 1): 0},
}


@pytest.mark.parametrize("kind", list(Connect))
def test_connect_truth_tables(kind):
    pairs = list(itertools.product([0.0, 1.0], repeat=2))
    a = torch.tensor([p[0] for p in pairs])
    s = torch.tensor([p[1] for p in pairs])
    out = connect(a, s, kind)
    assert out.tolist() == [TRUTH[kind][(int(x), int(y))] for x, y in pairs]


def test_connect_names_parse_and_unknown_is_listed():
    assert Connect.parse("iand") is Connect.IAND
    with pytest.raises(ValueError, match="add, and, iand"):
        Connect.parse("or")


def _silent_branch() -> Sequential:
    conv = TimeDistributed(nn.Conv2d(2, 2, 3, padding=1))
    with torch.no_grad():
        conv.module.weight.zero_()
        conv.module.bias.fill_(-1.0)                 # never reaches threshold
    return Sequential(conv, LIF(10e-3))


@pytest.mark.parametrize("kind,identity", [(Connect.ADD, True), (Connect.IAND, True),
                                           (Connect.AND, False)])
def test_silent_residual_branch_is_the_identity_for_add_and_iand(kind, identity):
    x = (torch.rand(5, 3, 2, 4, 4) < 0.4).float()
    out, _ = SEWBlock(_silent_branch(), connect=kind)(x)
    assert torch.equal(out, x) == identity
    if not identity:
        assert torch.equal(out, torch.zeros_like(x))


def test_block_threads_its_inner_states_over_chunks():
    torch.manual_seed(0)
    residual = Sequential(TimeDistributed(nn.Conv2d(2, 3, 3, padding=1)), LIF(5e-3))
    shortcut = Sequential(TimeDistributed(nn.Conv2d(2, 3, 1)), LIF(5e-3))
    block = SEWBlock(residual, shortcut, connect=Connect.ADD)
    x = (torch.rand(6, 2, 2, 5, 5) < 0.5).float() * 3
    full, _ = block(x)
    first, state = block(x[:2])
    rest, state = block(x[2:], state)
    assert torch.equal(torch.cat([first, rest]), full)
    assert len(state) == 2 and state[1] is not None
    assert set(full.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_shape_mismatch_names_the_fix():
    block = SEWBlock(Sequential(TimeDistributed(nn.Conv2d(2, 4, 3, padding=1)), LIF(5e-3)))
    with pytest.raises(ValueError, match="downsampling shortcut"):
        block(torch.zeros(2, 1, 2, 4, 4))
    with pytest.raises(ValueError, match="residual_state, shortcut_state"):
        SEWBlock(nn.Identity())(torch.zeros(2, 1, 3), state=(None,))
