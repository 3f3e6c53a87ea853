"""``lif_speed.py --check``: do all implementations compute the same network?

On one small size, every spiking implementation runs the same weights and input:

* forward: its output spike train must equal the reference's (``naive``) bit for bit, in
  inference and in training mode;
* backward of ``spikes.sum()``: the weight gradients (rescaled where an implementation stores
  scaled weights) are compared with the reference's by relative L2 error. Differences come from
  the float order of the surrogate formula, or from a different gradient (snnTorch detaches the
  reset).
"""

from __future__ import annotations

from typing import Any

import torch

import lif_nets

REFERENCE = "naive"
# implementations whose gradient is that of a detached reset, compared with this one as well
DETACHED = ("snntorch",)
# How each implementation rounds the membrane update and the threshold (the same maths; the
# float results can differ in the last bit, which only matters for a value within one ulp of
# the threshold).
FORMS = {
    "naive": ("v + (I - v) / 2", "h - 1 >= 0"),
    "naive_detach": ("v + (I - v) / 2", "h - 1 >= 0"),
    "snn5_reference": ("0.5 v + 0.5 I", "h - 1 >= 0"),
    "snn5_cpu": ("0.5 v + 0.5 I", "h - 1 >= 0"),
    "snn5_triton": ("0.5 v + 0.5 I", "h - 1 >= 0"),
    "spikingjelly": ("v + (I - v) / 2", "h - 1 >= 0"),
    "snntorch": ("0.5 v + (0.5 W) x", "h - 1 > 0"),
    "norse": ("v + 0.5 (I - v)", "h - 1 > 0"),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _run(name: str, size: tuple[int, int, int], seed: int, device: torch.device
         ) -> dict[str, Any]:
    b, t, n = size
    x = lif_nets.make_input(t, b, n, seed, device)
    built = lif_nets.build(name, n, seed, device)
    with torch.no_grad():
        z_infer = built.net(x).detach()
    z_train = built.net(x)
    z_train.sum().backward()
    grads = [lin.weight.grad.detach() * built.weight_scale for lin in built.linears]
    return {"z_infer": z_infer, "z_train": z_train.detach(), "grads": grads, "note": built.note}


def run_check(size: tuple[int, int, int], impls: list[str], seed: int, device: str
              ) -> dict[str, Any]:
    """Compare every spiking implementation in ``impls`` with the reference; JSON-able."""
    dev = torch.device(device)
    names = [i for i in impls if lif_nets.parse_impl(i)[0] != "floor"]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    ref = _run(REFERENCE, size, seed, dev)
    detached = None
    if any(lif_nets.parse_impl(i)[0] in DETACHED for i in names):
        detached = _run("naive_detach", size, seed, dev)
    rows = []
    for name in names:
        row: dict[str, Any] = {"impl": name,
                               "forms": FORMS.get(lif_nets.parse_impl(name)[0], ("?", "?"))}
        try:
            got = ref if name == REFERENCE else _run(name, size, seed, dev)
        except lif_nets.Unavailable as exc:
            rows.append({**row, "skipped": str(exc)})
            continue
        except Exception as exc:  # a failing implementation is a finding, not a crash
            rows.append({**row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        z, z_ref = got["z_infer"], ref["z_infer"]
        diff = z != z_ref
        steps = diff.flatten(1).any(1).nonzero().flatten()     # time steps with a difference
        row.update(
            note=got["note"],
            spikes_identical=bool(torch.equal(z, z_ref)),
            train_spikes_identical=bool(torch.equal(got["z_train"], ref["z_train"])),
            n_spikes=int(z.sum().item()), output_rate=float(z.mean().item()),
            n_different=int(diff.sum().item()),
            first_different_step=int(steps[0].item()) if len(steps) else None,
            grad_rel_err_w1=_rel(got["grads"][0], ref["grads"][0]),
            grad_rel_err_w2=_rel(got["grads"][1], ref["grads"][1]),
        )
        if detached is not None and lif_nets.parse_impl(name)[0] in DETACHED:
            row["grad_rel_err_vs_naive_detach"] = [
                _rel(got["grads"][k], detached["grads"][k]) for k in (0, 1)]
        rows.append(row)
    ok = all(r.get("spikes_identical") and r.get("train_spikes_identical")
             for r in rows if "skipped" not in r)
    return {"size": list(size), "reference": REFERENCE, "seed": seed, "rows": rows,
            "all_identical": ok}


def format_check(check: dict[str, Any]) -> str:
    b, t, n = check["size"]
    lines = [f"## --check: B={b}, T={t}, N={n}, reference = {check['reference']}", "",
             "| implementation | spikes identical (infer / train) | output rate | "
             "differing spikes | dW1 rel. err | dW2 rel. err | membrane update | fires at |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in check["rows"]:
        form, fire = r["forms"]
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['impl']} | {'skipped' if 'skipped' in r else 'ERROR'}: "
                         f"{r.get('skipped') or r.get('error')} | | | | | {form} | {fire} |")
            continue
        same = f"{'yes' if r['spikes_identical'] else 'NO'} / " \
               f"{'yes' if r['train_spikes_identical'] else 'NO'}"
        where = "" if r["first_different_step"] is None else \
            f" (from t={r['first_different_step']})"
        lines.append(f"| {r['impl']} | {same} | {r['output_rate']:.4f} | "
                     f"{r['n_different']}{where} | {r['grad_rel_err_w1']:.2e} | "
                     f"{r['grad_rel_err_w2']:.2e} | {form} | {fire} |")
    for r in check["rows"]:
        if "grad_rel_err_vs_naive_detach" in r:
            e1, e2 = r["grad_rel_err_vs_naive_detach"]
            lines.append(f"\n{r['impl']} detaches the reset from the graph; against the naive "
                         f"loop with a detached reset its gradients agree to {e1:.1e} (dW1) and "
                         f"{e2:.1e} (dW2).")
    lines += ["", "All spike trains bit-identical: " + ("yes" if check["all_identical"] else
              "NO (a last-bit difference in the membrane update decides a spike whose value "
              "lies within one ulp of the threshold; it then propagates)")]
    return "\n".join(lines)
