"""Diehl & Cook (2015) reference model in Brian2: an independent cross-check of snn5's model.

Equations and constants of the reference code (Diehl&Cook_spiking_MNIST.py, Brian 1), written
for Brian2: forward Euler (method='euler'), dt = 0.5 ms, 350 ms per sample + 150 ms rest with
the inputs off (no reset, as the reference), retry with intensity + 1 when fewer than 5
excitatory spikes, weights normalised to sum 78 per neuron before every presentation, STDP with
event-driven traces (pre 20 ms, post1 20 ms, post2 40 ms), immediate clipped updates, input
delays U[0, 10 ms) on the pre pathway (so the weight, the depression and the pre trace act at
the synapse when the spike arrives), theta += 0.05 mV per spike, tau_theta = 1e7 ms.

Trains on the first N training images (file order), labels the neurons from the training
responses of those N (the reference's running assignment), tests on the first M test images.
Brian2 is not a dependency of snn5: install it into a separate environment, e.g.

    python -m venv /tmp/brian2env && /tmp/brian2env/bin/pip install brian2 "numpy<2.4"
    /tmp/brian2env/bin/python examples/diehl_cook_brian2.py --n-e 100 --train 10000
        --test 2000 --data-dir /work/shared/data --out runs/dc_brian2_100_s0.json   # one line

and compare with ``examples/diehl_cook_mnist.py --samples 10000 --label-samples 10000
--test-samples 2000`` (its ``test_accuracy_running_labels`` uses the same labelling). About
0.2 s per presentation (Brian2 2.9, Cython target, one core): 10,000 samples take 30-60 min.
See docs/diehl_cook.md for the comparison.
"""

import argparse
import gzip
import json
import time

import numpy as np
from brian2 import (Hz, NeuronGroup, Network, PoissonGroup, Synapses, defaultclock, ms, mV,
                    network_operation, prefs, second, stop)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-e", type=int, default=100)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="/work/shared/data", help="folder with mnist/")
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", default="cython")
    args = ap.parse_args()
    prefs.codegen.target = args.target
    np.random.seed(args.seed)
    from brian2 import seed as b2seed
    b2seed(args.seed)
    defaultclock.dt = 0.5 * ms

    mnist = f"{args.data_dir}/mnist"
    xtr = read_idx(f"{mnist}/train-images-idx3-ubyte.gz").reshape(-1, 784)[:args.train]
    ytr = read_idx(f"{mnist}/train-labels-idx1-ubyte.gz")[:args.train].astype(int)
    xte = read_idx(f"{mnist}/t10k-images-idx3-ubyte.gz").reshape(-1, 784)[:args.test]
    yte = read_idx(f"{mnist}/t10k-labels-idx1-ubyte.gz")[:args.test].astype(int)
    n_e = args.n_e

    eqs_e = """
    dv/dt = ((-65*mV - v) + ge * (-v) + gi * (-100*mV - v)) / (100*ms) : volt (unless refractory)
    dge/dt = -ge / (1*ms) : 1
    dgi/dt = -gi / (2*ms) : 1
    dtheta/dt = -theta / (1e7*ms) * learning : volt
    nspk : integer
    learning : 1 (shared)
    theta_plus : volt (shared)
    """
    E = NeuronGroup(n_e, eqs_e, threshold="v > theta - 20*mV - 52*mV",
                    reset="v = -65*mV; theta += theta_plus; nspk += 1", refractory=5 * ms,
                    method="euler")
    eqs_i = """
    dv/dt = ((-60*mV - v) + ge * (-v) + gi * (-85*mV - v)) / (10*ms) : volt (unless refractory)
    dge/dt = -ge / (1*ms) : 1
    dgi/dt = -gi / (2*ms) : 1
    """
    I = NeuronGroup(n_e, eqs_i, threshold="v > -40*mV", reset="v = -45*mV", refractory=2 * ms,
                    method="euler")
    E.v = -105 * mV
    I.v = -100 * mV
    E.theta = 20 * mV
    E.learning = 1
    E.theta_plus = 0.05 * mV
    X = PoissonGroup(784, rates=np.zeros(784) * Hz)
    S = Synapses(X, E, model="""
        w : 1
        plastic : 1 (shared)
        post2before : 1
        dpre/dt = -pre / (20*ms) : 1 (event-driven)
        dpost1/dt = -post1 / (20*ms) : 1 (event-driven)
        dpost2/dt = -post2 / (40*ms) : 1 (event-driven)
        """, on_pre="""
        ge_post += w
        pre = 1.
        w = plastic * clip(w - 0.0001 * post1, 0, 1) + (1 - plastic) * w
        """, on_post="""
        post2before = post2
        w = plastic * clip(w + 0.01 * pre * post2before, 0, 1) + (1 - plastic) * w
        post1 = 1.
        post2 = 1.
        """, method="euler")
    S.connect()
    S.w = (np.random.rand(len(S)) + 0.01) * 0.3
    S.delay = "rand() * 10*ms"
    S.plastic = 1
    EI = Synapses(E, I, on_pre="ge_post += 10.4")
    EI.connect(j="i")
    IE = Synapses(I, E, on_pre="gi_post += 17.0")
    IE.connect(condition="i != j")
    syn_j = np.asarray(S.j[:])

    def normalize():
        w = np.asarray(S.w[:])
        colsum = np.bincount(syn_j, weights=w, minlength=n_e)
        S.w = w * (78.0 / colsum)[syn_j]

    st = {"k": 0, "tick": 0, "intensity": 2.0, "base": np.zeros(n_e), "phase": "train",
          "counts": [], "presentations": 0, "retries": 0, "done": False}
    images, total = [xtr], [args.train]

    def start_sample():
        if st["phase"] == "train":
            normalize()
        X.rates = images[0][st["k"]] / 8.0 * st["intensity"] * Hz
        st["base"] = np.asarray(E.nspk[:]).copy()

    @network_operation(dt=50 * ms)
    def controller():
        tick = st["tick"]
        st["tick"] += 1
        if tick % 10 == 0:
            start_sample()
        elif tick % 10 == 7:                          # 350 ms: end of the presentation
            c = np.asarray(E.nspk[:]) - st["base"]
            X.rates = np.zeros(784) * Hz
            st["presentations"] += 1
            if c.sum() < 5 and st["intensity"] < 2 + 100:
                st["intensity"] += 1
                st["retries"] += 1
            else:
                st["counts"].append(c)
                st["intensity"] = 2.0
                st["k"] += 1
                if st["k"] % 500 == 0:
                    print(f"{st['phase']} {st['k']} {time.time() - t0:.0f} s, "
                          f"{np.mean([x.sum() for x in st['counts']]):.2f} spikes/sample, "
                          f"{st['retries']} repeats", flush=True)
                if st["k"] == total[0]:
                    st["done"] = True
                    stop()

    net = Network(E, I, X, S, EI, IE, controller)
    t0 = time.time()
    net.run(args.train * 0.5 * second * 4, report=None)
    train_s = time.time() - t0
    train_counts = np.array(st["counts"])
    train_stats = {"spikes_per_sample": float(train_counts.sum(1).mean()),
                   "presentations": st["presentations"], "retries": st["retries"]}
    W = np.zeros((784, n_e))
    W[np.asarray(S.i[:]), syn_j] = np.asarray(S.w[:])
    theta_mv = np.asarray(E.theta[:] / mV)
    # labels from the training responses (mean count per class; ties: first max, as argmax)
    means = np.stack([train_counts[ytr == c].sum(0) / max(int((ytr == c).sum()), 1)
                      for c in range(10)])
    assignments = means.argmax(0)
    # test: no learning, theta fixed
    st.update(k=0, phase="test", counts=[], presentations=0, retries=0, intensity=2.0)
    images[0], total[0] = xte, args.test
    S.plastic = 0
    E.learning = 0
    E.theta_plus = 0 * mV
    t1 = time.time()
    net.run(args.test * 0.5 * second * 4, report=None)
    test_s = time.time() - t1
    test_counts = np.array(st["counts"])
    onehot = np.eye(10)[assignments]                              # [n_e, 10]
    per_class = test_counts @ onehot / np.maximum(onehot.sum(0), 1)
    acc = float((per_class.argmax(1) == yte).mean())
    # diffuse receptive field: less than 60 % of the weight on the 200 strongest pixels
    top = np.sort(W, axis=0)[::-1][:200].sum(0) / W.sum(0)
    res = {"n_e": n_e, "train_samples": args.train, "test": args.test, "seed": args.seed,
           "test_accuracy": acc, "train_seconds": train_s, "test_seconds": test_s,
           "train": train_stats,
           "test_spikes_per_sample": float(test_counts.sum(1).mean()),
           "test_retries": st["retries"],
           "diffuse_neurons": int((top < 0.6).sum()),
           "labels": np.bincount(assignments, minlength=10).tolist(),
           "theta_mean_mV": float(theta_mv.mean()),
           "brian2_target": args.target}
    print(json.dumps(res, indent=1))
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    np.savez(args.out.replace(".json", ".npz"), W=W, theta=theta_mv, train_counts=train_counts,
             test_counts=test_counts, assignments=assignments)


if __name__ == "__main__":
    main()
