"""snn5 <-> Norse / snnTorch through NIR (benchmarks/nir_crosscheck.py does the full table).

The peers are not in the main venv: those tests skip there and run in ``benchmarks/.venv``::

    OMP_NUM_THREADS=1 benchmarks/.venv/bin/python -m pytest -q tests/export/test_crosscheck.py
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import nir
import numpy as np
import pytest

from snn5.export.peers import SNNTORCH_DT, Peer, from_peer_graph, to_peer_graph

# the peers' NIR importers/exporters still call nirtorch's deprecated entry points, and Norse's
# exporter hands numpy an object without the numpy 2 __array__(copy=...) signature
pytestmark = [
    pytest.mark.filterwarnings("ignore:nirtorch\\.\\w+ is being deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"
                               ":DeprecationWarning"),
]

DT = 1e-3
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "nir_crosscheck.py"


def _graph() -> nir.NIRGraph:
    return nir.NIRGraph.from_list(
        nir.Linear(weight=np.ones((3, 2), np.float32)),
        nir.LIF(tau=np.full(3, 5e-3), r=np.ones(3), v_leak=np.zeros(3),
                v_threshold=np.full(3, 0.5)),
        nir.Linear(weight=np.ones((2, 3), np.float32)),
        nir.LI(tau=np.full(2, 8e-3), r=np.ones(2), v_leak=np.zeros(2)))


@pytest.mark.parametrize("peer", list(Peer))
def test_peer_euler_step_decays_like_the_exact_step(peer):
    g = to_peer_graph(_graph(), peer, DT)
    h = DT if peer is Peer.NORSE else SNNTORCH_DT
    for name, tau in (("lif", 5e-3), ("li", 8e-3)):
        node = g.nodes[name]
        assert isinstance(node, nir.LIF)                 # the LI readout too, never firing
        np.testing.assert_allclose(1 - h / node.tau, math.exp(-DT / tau), rtol=1e-12)
    assert np.all(g.nodes["li"].v_threshold == np.inf)
    th = np.float32(g.nodes["lif"].v_threshold[0])
    assert th < np.float32(0.5) and np.nextafter(th, np.float32(1)) == np.float32(0.5)
    back = from_peer_graph(to_peer_graph(_graph(), Peer.SNNTORCH, DT), Peer.SNNTORCH, DT, (2,))
    np.testing.assert_allclose(back.nodes["lif"].tau, 5e-3, rtol=1e-9)


def test_norse_average_pool_before_a_neuron_folds_into_the_conv_before_it():
    """A pool on currents (conv -> avg pool -> LIF): Norse has no AvgPool2d, so it becomes a
    sum pool with 1/4 folded into the conv's weights and bias (exact: a power of two)."""
    w, b = np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32), \
        np.array([0.3, -0.1], np.float32)
    g = nir.NIRGraph.from_list(
        nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=1, dilation=1, groups=1,
                   bias=b),
        nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                      padding=np.array([0, 0])),
        nir.LIF(tau=np.full((2, 2, 2), 5e-3), r=np.ones((2, 2, 2)), v_leak=np.zeros((2, 2, 2)),
                v_threshold=np.full((2, 2, 2), 0.5)))
    out = to_peer_graph(g, Peer.NORSE, DT)
    assert isinstance(out.nodes["avgpool2d"], nir.SumPool2d)       # same name, sum pool
    assert np.array_equal(out.nodes["conv2d"].weight, w / 4)
    assert np.array_equal(out.nodes["conv2d"].bias, b / 4)
    assert np.array_equal(g.nodes["conv2d"].weight, w)            # the input graph unchanged
    assert isinstance(to_peer_graph(g, Peer.SNNTORCH, DT).nodes["avgpool2d"], nir.AvgPool2d)


def _script():
    spec = importlib.util.spec_from_file_location("nir_crosscheck", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["mlp_lif_zero", "mlp_if_zero", "conv_avgpool_lif_zero"])
def test_norse_runs_snn5_exports_with_identical_spikes(model):
    pytest.importorskip("norse")
    row = _script().snn5_to_peer(Peer.NORSE, model)
    assert row["identical_spikes"] and row["spikes"] > 0
    assert row["max_abs_membrane_diff"] < 1e-5


@pytest.mark.parametrize("model", ["mlp_lif_zero", "conv_avgpool_lif_zero"])
def test_snntorch_runs_snn5_exports_with_identical_spikes(model):
    pytest.importorskip("snntorch")
    row = _script().snn5_to_peer(Peer.SNNTORCH, model)
    assert row["identical_spikes"] and row["spikes"] > 0
    assert row["max_abs_membrane_diff"] < 1e-5


@pytest.mark.parametrize("peer", list(Peer))
def test_subtract_reset_is_not_reproduced_by_the_peers(peer):
    """Documented limit: both importers build LIF nodes that reset to v_reset / zero."""
    pytest.importorskip(peer.value)
    assert not _script().snn5_to_peer(peer, "mlp_lif_subtract")["identical_spikes"]


@pytest.mark.parametrize("peer", list(Peer))
def test_peer_exports_run_in_snn5_with_identical_spikes(peer):
    pytest.importorskip(peer.value)
    row = _script().peer_to_snn5(peer)
    assert row["identical_spikes"] and row["spikes"] > 0
    assert row["max_abs_membrane_diff"] < 1e-5
