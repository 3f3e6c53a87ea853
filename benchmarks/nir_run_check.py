"""A trained run exported to NIR and executed four ways on the same test samples.

1. snn5 (the run's model, dense simulation);
2. the event-driven runtime on the exported graph (:class:`snn5.export.EventRuntime`), which
   also counts the synaptic events priced per energy profile (:func:`snn5.metrics.
   energy_breakdown`);
3. Norse and 4. snnTorch through their NIR importers (the graph rewritten for their
   forward-Euler step, :func:`snn5.export.peers.to_peer_graph`), when they are installed (the
   peers' venv: ``bash benchmarks/setup_peers.sh``).

Compared: the predicted class per sample, the spikes of every spiking layer per batch (identical
tensors or not), and for the event runtime the readout trace. Each peer executor is loaded anew
for every batch: snnTorch's imported layers keep their membrane between calls. The
exported graph holds BatchNorm folded into the weights, which rounds differently in float32
from conv then BatchNorm: a membrane sitting within a rounding error of the threshold can fire
in one executor and not the other, so spikes are compared as the fraction of identical spike
tensors (against snn5, and the peers against the event runtime, which runs the folded graph as
they do) and the agreement of the predictions, not assumed equal. The peers reproduce zero
reset only (see docs/event_runtime.md): use a run trained with ``reset: zero``
(configs/mnist_conv_nir.yaml).

    OMP_NUM_THREADS=1 benchmarks/.venv/bin/python benchmarks/nir_run_check.py \\
        runs/mnist_conv_nir --data-dir ../shared/data --samples 1000 --out result.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import nir
import torch
from torch import Tensor, nn

from snn5.export import EventRuntime, export_nir
from snn5.export.peers import Peer, to_peer_graph
from snn5.metrics import ENERGY_MODELS, energy_breakdown
from snn5.runs.run import load_run


def load_peer(peer: Peer, graph: nir.NIRGraph, dt: float) -> nn.Module | None:
    try:
        if peer is Peer.NORSE:
            import norse.torch as norse
            from norse.torch.functional.reset import reset_value
            return norse.from_nir(graph, dt=dt, ignore_warnings=True, reset_method=reset_value)
        from snntorch.import_nir import import_from_nir
    except ImportError:
        return None
    with contextlib.redirect_stdout(io.StringIO()):       # it prints its weight-scaling notes
        return import_from_nir(graph)


def peer_run(peer: Peer, net: nn.Module, x: Tensor, steps: int, tau: float, dt: float,
             names: list[str]) -> tuple[Tensor, dict[str, Tensor]]:
    """Step a peer executor on the static input: its readout membrane ``[T, B, C]`` and the
    spikes ``[T, B, *F]`` of the neuron nodes ``names``."""
    modules = dict(net.named_modules())
    trace: list[Tensor] = []
    spikes: dict[str, list[Tensor]] = {n: [] for n in names}

    def readout_hook(m: nn.Module, args: Any, out: Any) -> None:
        state = m.mem if isinstance(out, Tensor) else out[1]
        trace.append((state if isinstance(state, Tensor) else state.v).detach().clone())

    def spike_hook(m: nn.Module, args: Any, out: Any, key: str) -> None:
        spikes[key].append((out if isinstance(out, Tensor) else out[0]).detach().clone())

    handles = [modules["readout"].register_forward_hook(readout_hook)]
    for n in names:
        module = modules.get(n) or modules.get(n.replace(".", "_"))
        handles.append(module.register_forward_hook(
            lambda m, a, out, key=n: spike_hook(m, a, out, key)))
    state = None
    with torch.no_grad():
        for _ in range(steps):
            _, state = net(x, state)
    for h in handles:
        h.remove()
    v = torch.stack(trace)
    if peer is Peer.SNNTORCH:                             # its membrane is v / (1 - beta)
        v = v * (1.0 - torch.exp(torch.tensor(-dt / tau)))
    return v, {n: torch.stack(z) for n, z in spikes.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run folder of `snn5 train` (config.yaml + checkpoints/)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--samples", type=int, default=1000, help="first N test samples")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, data, model, _ = load_run(args.run, data_dir=args.data_dir)
    graph = export_nir(model)
    meta = graph.metadata["snn5"]
    dt, steps = float(meta["dt"]), int(meta["timesteps"])
    tau = float(graph.nodes["readout"].tau.flat[0])
    runtime = EventRuntime(graph)
    peer_graphs = {p: to_peer_graph(graph, p, dt) for p in (Peer.NORSE, Peer.SNNTORCH)}
    peers = {p: load_peer(p, g, dt) for p, g in peer_graphs.items()}
    x_all, y_all = data.test.x[:args.samples], data.test.y[:args.samples]
    preds: dict[str, list[Tensor]] = {"snn5": [], "event_runtime": []}
    preds.update({p.value: [] for p, net in peers.items() if net is not None})
    same = {k: 0 for k in preds if k != "snn5"}
    same_graph = {k: 0 for k in preds if k not in ("snn5", "event_runtime")}
    spike_tensors = 0
    max_trace_diff = 0.0
    counts: dict[str, dict[str, float]] = {}
    seconds = {k: 0.0 for k in preds}
    for start in range(0, len(x_all), args.batch_size):
        x = x_all[start:start + args.batch_size]
        t0 = time.perf_counter()
        with torch.no_grad():
            logits, scores = model(x, per_step=True)                     # [T, B, C]
        seconds["snn5"] += time.perf_counter() - t0
        preds["snn5"].append(logits.argmax(-1))
        t0 = time.perf_counter()
        res = runtime.run(x)
        seconds["event_runtime"] += time.perf_counter() - t0
        trace = res.outputs["output"]                                    # [T, B, C]
        preds["event_runtime"].append(trace.mean(0).argmax(-1))
        max_trace_diff = max(max_trace_diff, float((trace - scores).abs().max()))
        for node, c in res.counts.items():
            acc = counts.setdefault(node, dict.fromkeys(c, 0.0))
            for k, v in c.items():
                acc[k] += v
        ours = _spikes(model, x)
        spike_tensors += len(ours)
        same["event_runtime"] += sum(torch.equal(res.spikes[n], z) for n, z in ours.items())
        for peer, net in peers.items():
            if net is None:
                continue
            net = load_peer(peer, peer_graphs[peer], dt)   # fresh: imported layers may keep
            t0 = time.perf_counter()                          # their membrane between calls
            v, z_peer = peer_run(peer, net, x, steps, tau, dt, list(ours))
            seconds[peer.value] += time.perf_counter() - t0
            preds[peer.value].append(v.mean(0).argmax(-1))
            same[peer.value] += sum(torch.equal(z_peer[n].reshape(z.shape), z)
                                    for n, z in ours.items())
            same_graph[peer.value] += sum(torch.equal(z_peer[n].reshape(z.shape),
                                                      res.spikes[n]) for n, z in ours.items())
    n = len(x_all)
    per_sample = {node: {k: v / n for k, v in c.items()} for node, c in counts.items()}
    cat = {k: torch.cat(v) for k, v in preds.items()}
    result: dict[str, Any] = {
        "run": args.run, "test_samples": n, "timesteps": steps, "dt": dt,
        "accuracy": {k: float((p == y_all).float().mean()) for k, p in cat.items()},
        "agreement_with_snn5": {k: float((p == cat["snn5"]).float().mean())
                                for k, p in cat.items() if k != "snn5"},
        "identical_spike_tensors": {k: f"{v}/{spike_tensors}" for k, v in same.items()},
        "identical_spike_tensors_with_event_runtime": {k: f"{v}/{spike_tensors}"
                                                       for k, v in same_graph.items()},
        "event_runtime": {"max_abs_readout_diff": max_trace_diff,
                          "synaptic_events_per_sample": sum(c["synops"]
                                                            for c in per_sample.values())},
        "energy_j_per_sample": {name: energy_breakdown(per_sample, name).total_j
                                for name in ENERGY_MODELS.names()},
        "seconds": seconds,
        "peers_missing": [p.value for p, net in peers.items() if net is None],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


def _spikes(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Spikes ``[T, B, *F]`` of each body neuron under its NIR node name."""
    from snn5.nn.neurons import NeuronBase
    seen: dict[str, Tensor] = {}
    handles = [layer.register_forward_hook(
        lambda m, a, out, key=f"body.{i}": seen.__setitem__(key, out[0].detach()))
        for i, layer in enumerate(model.body) if isinstance(layer, NeuronBase)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


if __name__ == "__main__":
    main()
