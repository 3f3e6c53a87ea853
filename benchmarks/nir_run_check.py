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

import nir_crosscheck as crosscheck          # the peers' loading and stepping (same folder)


def load_peer(peer: Peer, graph: nir.NIRGraph, dt: float) -> nn.Module | None:
    """The peer's executor of ``graph`` (zero reset), or None when the peer is not installed."""
    try:
        return crosscheck.load_peer(peer, graph, "zero", dt=dt)
    except ImportError:
        return None


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
        ours, _ = crosscheck.snn5_run(model, x)                         # spikes per layer
        spike_tensors += len(ours)
        same["event_runtime"] += sum(torch.equal(res.spikes[n], z) for n, z in ours.items())
        for peer, net in peers.items():
            if net is None:
                continue
            net = load_peer(peer, peer_graphs[peer], dt)   # fresh: imported layers may keep
            t0 = time.perf_counter()                          # their membrane between calls
            z_peer, v_peer = crosscheck.peer_run(peer, net, x, [*ours, "readout"], steps)
            v = v_peer["readout"]                                        # [T, B, C]
            if peer is Peer.SNNTORCH:                     # its membrane is v / (1 - beta)
                v = v * (1.0 - torch.exp(torch.tensor(-dt / tau)))
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


if __name__ == "__main__":
    main()
