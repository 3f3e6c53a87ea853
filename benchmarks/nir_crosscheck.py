"""Cross-check snn5's NIR export against Norse's and snnTorch's NIR importers, and the reverse.

snn5 -> peer: an snn5 model is exported (:func:`snn5.export.export_nir`), rewritten for the
peer's discretisation (:func:`snn5.export.peers.to_peer_graph`: the exact graph cannot give
identical spikes under a peer's forward-Euler step, see that module) and loaded with the peer's
importer; both run the same input for T steps. peer -> snn5: a peer model is exported with the
peer's exporter, mapped back (:func:`snn5.export.peers.from_peer_graph`) and run by snn5's
event runtime (:class:`snn5.export.EventRuntime`, NIR semantics: the graph has no snn5
metadata). Compared: the spikes of every spiking layer at every step (identical or not) and the
largest absolute difference of the readout membrane (snn5 -> peer; the LI readout runs in the
peer as a LIF that never fires) or of the last layer's membrane (peer -> snn5).

Run in the peers' venv (``bash benchmarks/setup_peers.sh``)::

    OMP_NUM_THREADS=1 benchmarks/.venv/bin/python benchmarks/nir_crosscheck.py

It prints a Markdown table and writes ``benchmarks/results/nir_crosscheck.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from snn5.export import EventRuntime, export_nir
from snn5.export.peers import Peer, from_peer_graph, to_peer_graph
from snn5.models import SpikingClassifier
from snn5.models.registry import build_model, parse_model_config
from snn5.nn import IF, LIF, MembraneReadout, TimeDistributed
from snn5.nn.neurons import NeuronBase

DT = 1e-3
STEPS = 16
RESULTS = Path(__file__).parent / "results" / "nir_crosscheck.json"


# ----------------------------------------------------------------------------- snn5 models

def mlp(neuron: str, reset: str, seed: int = 0) -> SpikingClassifier:
    """Flatten -> Linear(20, 32) -> neuron -> Linear(32, 24) -> neuron -> Linear(24, 4) -> LI."""
    torch.manual_seed(seed)

    def cell(v_th: float, tau: float) -> NeuronBase:
        if neuron == "if":
            return IF(v_th=v_th, reset=reset, dt=DT)
        return LIF(tau, v_th=v_th, reset=reset, dt=DT)
    layers = [TimeDistributed(nn.Flatten()), nn.Linear(20, 32), cell(0.5, 4e-3),
              nn.Linear(32, 24), cell(0.3, 6e-3), nn.Linear(24, 4)]
    return SpikingClassifier(layers, MembraneReadout(5e-3, dt=DT), timesteps=STEPS,
                             encoding="direct", input_shape=(20,)).eval()


def conv(reset: str, seed: int = 0) -> SpikingClassifier:
    """conv_snn with average pooling (BatchNorm folded at export), LIF neurons."""
    cfg = parse_model_config({"name": "conv_snn", "channels": [4, 6], "pool": "avg",
                              "fc_hidden": [12], "timesteps": STEPS,
                              "neuron": {"kind": "lif", "tau_mem": 5e-3, "v_th": 0.2,
                                         "reset": reset}})
    torch.manual_seed(seed)
    model = build_model(cfg, (1, 8, 8), 3).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.fill_(3.0)
        model.body[7].weight.mul_(4)
    return model


MODELS = {
    "mlp_lif_zero": (lambda: mlp("lif", "zero"), (20,)),
    "mlp_lif_subtract": (lambda: mlp("lif", "subtract"), (20,)),
    "mlp_if_zero": (lambda: mlp("if", "zero"), (20,)),
    "conv_avgpool_lif_zero": (lambda: conv("zero"), (1, 8, 8)),
}


def snn5_run(model: SpikingClassifier, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Spikes of each body neuron by node name ``[T, B, *F]`` and the readout trace."""
    seen: dict[str, Tensor] = {}
    handles = [layer.register_forward_hook(
        lambda m, a, out, key=f"body.{i}": seen.__setitem__(key, out[0].detach()))
        for i, layer in enumerate(model.body) if isinstance(layer, NeuronBase)]
    with torch.no_grad():
        _, scores = model(x, per_step=True)
    for h in handles:
        h.remove()
    return seen, scores


# ----------------------------------------------------------------------------- peers

def load_peer(peer: Peer, graph: nir.NIRGraph, reset: str, dt: float = DT) -> nn.Module:
    if peer is Peer.NORSE:
        import norse.torch as norse
        from norse.torch.functional.reset import reset_subtract, reset_value
        return norse.from_nir(graph, dt=dt, ignore_warnings=True,
                              reset_method=reset_subtract if reset == "subtract" else reset_value)
    from snntorch.import_nir import import_from_nir
    with contextlib.redirect_stdout(io.StringIO()):   # it prints its weight-scaling notes
        return import_from_nir(graph)


def peer_run(peer: Peer, net: nn.Module, x: Tensor, names: list[str], steps: int
             ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Step the imported executor ``steps`` times on the static input ``x``; spikes and
    membranes ``[T, B, *F]`` of the neuron nodes ``names`` (recorded by forward hooks)."""
    spikes: dict[str, list[Tensor]] = {n: [] for n in names}
    mems: dict[str, list[Tensor]] = {n: [] for n in names}
    modules = dict(net.named_modules())
    handles = []
    for n in names:
        module = modules.get(n) or modules.get(n.replace(".", "_"))
        if module is None:
            raise KeyError(f"no module for node {n} in {sorted(modules)}")

        def hook(m: nn.Module, args: Any, out: Any, key: str = n) -> None:
            z, state = (out, m.mem) if isinstance(out, Tensor) else out[:2]
            spikes[key].append(z.detach().clone())
            v = state if isinstance(state, Tensor) else state.v
            mems[key].append(v.detach().clone())
        handles.append(module.register_forward_hook(hook))
    state = None
    with torch.no_grad():
        for _ in range(steps):
            _, state = net(x, state)
    for h in handles:
        h.remove()
    return ({n: torch.stack(v) for n, v in spikes.items()},
            {n: torch.stack(v) for n, v in mems.items()})


def snn5_to_peer(peer: Peer, model_name: str) -> dict[str, Any]:
    build, shape = MODELS[model_name]
    model = build()
    reset = "subtract" if "subtract" in model_name else "zero"
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(1)) * 3
    if len(shape) == 1:
        x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1)) * 2
    ours, scores = snn5_run(model, x)
    graph = to_peer_graph(export_nir(model), peer, DT)
    names = [*ours, "readout"]
    z, v = peer_run(peer, load_peer(peer, graph, reset), x, names, model.timesteps)
    readout = v["readout"]
    if peer is Peer.SNNTORCH:                         # snnTorch's membrane is v / (1 - beta)
        tau = float(np.asarray(export_nir(model).nodes["readout"].tau).flat[0])
        readout = readout * (1.0 - np.exp(-DT / tau))
    same = all(torch.equal(z[n], ours[n]) for n in ours)
    return {"peer": peer.value, "direction": "snn5 -> peer", "model": model_name,
            "layers": len(ours), "identical_spikes": same,
            "spikes": int(sum(t.sum() for t in ours.values())),
            "max_abs_membrane_diff": float((readout - scores).abs().max()),
            "steps": model.timesteps}


# ----------------------------------------------------------------------------- reverse

def peer_model(peer: Peer) -> tuple[nn.Module, list[nn.Module]]:
    """Linear(20, 32) -> LIF -> Linear(32, 6) -> LIF in the peer's own modules."""
    torch.manual_seed(0)
    l1, l2 = nn.Linear(20, 32), nn.Linear(32, 6)
    with torch.no_grad():
        l1.weight.mul_(3)
        l2.weight.mul_(3)
    if peer is Peer.NORSE:
        from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState
        p = LIFBoxParameters(tau_mem_inv=torch.tensor(1 / 5e-3), v_th=torch.tensor(0.4))
        cells = [LIFBoxCell(p, dt=DT), LIFBoxCell(p, dt=DT)]
        return SequentialState(l1, cells[0], l2, cells[1]), cells
    import snntorch as snn
    # per-neuron parameters: its exporter writes scalar ones as shape () that NIR's type check
    # refuses after a Linear
    cells = [snn.Leaky(beta=torch.full((n,), 0.8), threshold=torch.full((n,), 0.4),
                       reset_mechanism="zero", init_hidden=True, reset_delay=False)
             for n in (32, 6)]
    return nn.Sequential(l1, cells[0], l2, cells[1]), cells


def peer_to_snn5(peer: Peer) -> dict[str, Any]:
    net, cells = peer_model(peer)
    x = torch.randn(4, 20, generator=torch.Generator().manual_seed(2))
    if peer is Peer.NORSE:
        from norse.torch.utils.export_nir import to_nir
        graph = to_nir(net, x, dt=DT)
    else:
        from snntorch.export_nir import export_to_nir
        graph = export_to_nir(net, x[0])         # unbatched sample: its type check wants it
    # the peer itself, step by step (membranes of both layers)
    z_peer: list[list[Tensor]] = [[], []]
    v_peer: list[list[Tensor]] = [[], []]
    with torch.no_grad():
        if peer is Peer.NORSE:
            s = [None, None]
            for _ in range(STEPS):
                h = l_out = x
                for i, (lin, cell) in enumerate(zip((net[0], net[2]), cells)):
                    h, s[i] = cell(lin(h), s[i])
                    z_peer[i].append(h)
                    v_peer[i].append(s[i].v)
                del l_out
        else:
            for cell in cells:
                cell.reset_mem()                      # the export's trace ran one step
            for _ in range(STEPS):
                h = x
                for i, (lin, cell) in enumerate(zip((net[0], net[2]), cells)):
                    h = cell(lin(h))                  # init_hidden: the cell keeps mem
                    z_peer[i].append(h)
                    v_peer[i].append(cell.mem.clone())
    res = EventRuntime(from_peer_graph(graph, peer, DT, (20,)), dt=DT).run(x, steps=STEPS)
    lif_nodes = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    same = all(torch.equal(res.spikes[n], torch.stack(z_peer[i]))
               for i, n in enumerate(lif_nodes))
    diff = float((res.membranes[lif_nodes[-1]] - torch.stack(v_peer[1])).abs().max())
    return {"peer": peer.value, "direction": "peer -> snn5", "model": "mlp_lif_zero",
            "layers": len(lif_nodes), "identical_spikes": same,
            "spikes": int(sum(torch.stack(z).sum() for z in z_peer)),
            "max_abs_membrane_diff": diff, "steps": STEPS}


# ----------------------------------------------------------------------------- table

ROWS = [(p, m) for p in Peer for m in MODELS]


def run_all() -> list[dict[str, Any]]:
    rows = []
    for peer, name in ROWS:
        try:
            rows.append(snn5_to_peer(peer, name))
        except Exception as err:            # a peer that cannot load the graph is a result
            rows.append({"peer": peer.value, "direction": "snn5 -> peer", "model": name,
                         "layers": None, "identical_spikes": False, "spikes": None,
                         "max_abs_membrane_diff": None, "steps": STEPS,
                         "error": f"{type(err).__name__}: {err}"[:160]})
    for peer in Peer:
        try:
            rows.append(peer_to_snn5(peer))
        except Exception as err:
            rows.append({"peer": peer.value, "direction": "peer -> snn5", "model": "mlp_lif_zero",
                         "layers": None, "identical_spikes": False, "spikes": None,
                         "max_abs_membrane_diff": None, "steps": STEPS,
                         "error": f"{type(err).__name__}: {err}"[:160]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| peer | direction | model | layers | identical spikes | spikes | "
             "max abs membrane diff | steps |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = r["max_abs_membrane_diff"]
        ident = "yes" if r["identical_spikes"] else "no" + (f" ({r['error']})"
                                                          if "error" in r else "")
        lines.append(f"| {r['peer']} | {r['direction']} | {r['model']} | {r['layers']} | "
                     f"{ident} | {r['spikes']} | "
                     f"{'-' if diff is None else f'{diff:.2e}'} | {r['steps']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)              # the importers' r != 1 and rewrite notes
    rows = run_all()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
