"""The Triton kernels of snn5.kernels.triton_ops.

Without a GPU (marked slow, need the triton package): the kernels run in Triton's interpreter on
CPU tensors, called directly rather than through the op dispatcher. Forward spikes and states
must equal the reference (``backend="reference"``) bit for bit, with the parameters prepared by
the real dispatch code; the saved tensors must equal the C++ CPU kernels'; the backward must match
the C++ backward to 1e-4 of the largest value (float32 arithmetic in both; bfloat16 input
gradients to one bfloat16 step, 2**-7 of the largest). The kernels are also compiled to PTX for
sm_80/sm_90 to check that the forward has no fused multiply-add and nothing flushes subnormals.

With CUDA (marked gpu): the full op path on the GPU, fused (``backend="triton"``) against the
reference on the same device, with the tolerances of tests/kernels/test_kernel_parity.py.
"""

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import textwrap
import zlib

import pytest
import torch

import snn5
from snn5.core import ATan, FastSigmoid, Rectangle, Sigmoid, Triangle
from snn5.kernels import load_cpu_kernels

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
NO_TRITON = "triton is not installed (CPU torch wheels have none; `pip install triton` runs " \
            "the kernels in Triton's interpreter)"

FAMILIES = ["IF", "LIF", "PLIF", "ALIF"]
SURROGATES = [ATan, Sigmoid, FastSigmoid, Triangle, Rectangle]
RESETS = ["subtract", "zero", "none"]
DTYPES = [torch.float32, torch.bfloat16]
MATRIX = list(itertools.product(FAMILIES, RESETS, SURROGATES, DTYPES, [False, True]))


def ids(v):
    return getattr(v, "__name__", str(v)).replace("torch.", "")


def pair(family, device="cpu", **kw):
    """The same neuron twice: AUTO/forced fused backend and the reference, equal parameters."""
    backend = kw.pop("backend", "auto")
    if family != "IF":
        kw.setdefault("tau_mem", 5e-3)
    fused = getattr(snn5, family)(**kw, backend=backend).to(device)
    ref = getattr(snn5, family)(**kw, backend="reference").to(device)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / (b.abs().max() + 1e-6)).item()


def random_state(neuron, x):
    state = neuron.init_state(x[0])
    return type(state)(*(torch.rand_like(s) for s in state))


# ================================================================== interpreter (no GPU)

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
interpreter = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON),
    pytest.mark.skipif(HAS_TRITON and not INTERPRET,
                       reason="needs TRITON_INTERPRET=1 from the start of the process (triton "
                              "reads it when imported); test_kernels_in_triton_interpreter "
                              "runs these tests so"),
    pytest.mark.skipif(HAS_TRITON and INTERPRET and load_cpu_kernels() is None,
                       reason="the C++ CPU kernels (the backward's yardstick) are not built"),
]


def _interp(fn):
    """Mark a test as an interpreter test (slow; triton; TRITON_INTERPRET=1; CPU kernels)."""
    for mark in reversed(interpreter):
        fn = mark(fn)
    return fn


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
@pytest.mark.skipif(INTERPRET, reason="this process is the interpreter run")
def test_kernels_in_triton_interpreter():
    """Run the test_interpreter_* tests of this file in a fresh process with
    TRITON_INTERPRET=1 (it has to be set before triton is first imported)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-m", "slow", "-k", "test_interpreter_",
         "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, env=env, timeout=3600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


@pytest.fixture(scope="module")
def tk():
    """snn5.kernels.triton_ops, whose kernels run in the interpreter in this process."""
    from triton.runtime.interpreter import InterpretedFunction

    from snn5.kernels import triton_ops

    assert isinstance(triton_ops._leaky_fwd, InterpretedFunction)
    return triton_ops


@pytest.fixture
def cpu_ops():
    """The custom ops as registered (the CPU kernels), whatever a test patches later."""
    from snn5.kernels import ops

    return {name: getattr(ops, name) for name in
            ("leaky_scan", "leaky_scan_backward", "alif_scan", "alif_scan_backward")}


def route_to_triton(monkeypatch, tk):
    """Make dispatch call the Triton forward (with save=True) instead of the op; returns the
    list of (op name, args, outputs) of the calls."""
    from snn5.kernels import ops

    calls = []
    for name in ("leaky_scan", "alif_scan"):
        def run(*args, _name=name):
            out = getattr(tk, _name)(*args[:-1], True)
            calls.append((_name, args, out))
            return out
        monkeypatch.setattr(ops, name, run)
    return calls


def compare_backward(tk, cpu_ops, name, args, out, dtype, with_state_grads=True):
    """The Triton backward against the C++ one on the same saved tensors and random grads."""
    gen = torch.Generator().manual_seed(3)
    steps, n = args[0].shape

    def rnd(*shape):
        return torch.randn(shape, generator=gen).to(dtype)

    gz = rnd(steps, n)
    with torch.no_grad():                   # the backward ops have no autograd of their own
        ga, gb = _run_backward(tk, cpu_ops, name, args, out, gz, rnd, with_state_grads)
    tol = 1e-4 if dtype == torch.float32 else 2.0 ** -7
    for k, (a, b) in enumerate(zip(ga[:-1], gb[:-1])):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert rel(a, b) <= tol, f"state/input gradient {k} off by {rel(a, b):.2e}"
    assert ga[-1].dtype == torch.float64 and ga[-1].shape == (4,)
    assert rel(ga[-1], gb[-1]) <= 1e-4, f"parameter grads {ga[-1]} vs {gb[-1]}"


def _run_backward(tk, cpu_ops, name, args, out, gz, rnd, with_state_grads):
    x, n = args[0], args[0].shape[1]
    if name == "leaky_scan":
        _, v0, beta, omb, v_th, width, is_if, reset, surrogate, detach, _ = args
        learn_decay = not is_if and beta.requires_grad     # PLIF: the decay gradients
        bargs = (gz, rnd(n) if with_state_grads else None, out[2],
                 x if learn_decay else None, v0 if learn_decay else None, beta, omb, v_th,
                 width, is_if, reset, surrogate, detach)
        return tk.leaky_scan_backward(*bargs), cpu_ops["leaky_scan_backward"](*bargs)
    _, _, _, v_th, width, beta, omb, rho, omr, b, reset, surrogate, detach, _ = args
    state_grads = (rnd(n), rnd(n)) if with_state_grads else (None, None)
    bargs = (gz, *state_grads, out[3], out[4], v_th, width, beta, omb, rho, omr, b, reset,
             surrogate, detach)
    return tk.alif_scan_backward(*bargs), cpu_ops["alif_scan_backward"](*bargs)


@_interp
@pytest.mark.parametrize("family, reset, surrogate, dtype, detach", MATRIX, ids=ids)
def test_interpreter_matches_reference_and_cpu_kernels(tk, cpu_ops, monkeypatch, family, reset,
                                                       surrogate, dtype, detach):
    torch.manual_seed(zlib.crc32(f"{family}{reset}{surrogate.__name__}{dtype}{detach}".encode()))
    fused, ref = pair(family, reset=reset, surrogate=surrogate(learnable=True),
                      learn_v_th=True, detach_reset=detach)
    x = (torch.randn(12, 3, 37) * 1.5).to(dtype)
    state = random_state(fused, x)
    z_ref, s_ref = ref(x, state)
    calls = route_to_triton(monkeypatch, tk)
    z, s = fused(x, state)                  # with grad: dispatch prepares learned parameters
    assert len(calls) == 1, "dispatch did not reach the Triton kernel"
    assert torch.equal(z, z_ref), "spikes differ from the reference"
    assert all(torch.equal(p, q) for p, q in zip(s, s_ref)), "states differ from the reference"
    assert z.dtype == dtype and all(p.dtype == dtype for p in s)

    name, args, out = calls[0]
    with torch.no_grad():
        cpu = cpu_ops[name](*args[:-1], True)
    assert all(torch.equal(p, q) for p, q in zip(out, cpu)), "outputs differ from the C++ kernel"
    compare_backward(tk, cpu_ops, name, args, out, dtype)


def _leaky_args(x, is_if=False, reset=0, surrogate=0, detach=False, learn=False):
    def s(v):
        return torch.tensor(v, dtype=torch.float64, requires_grad=learn)
    beta = 0.8187307530779818
    return (x, torch.rand(x.shape[1]).to(x.dtype), s(beta), s(1.0 - beta), s(1.0), s(2.0),
            is_if, reset, surrogate, detach, True)


def _alif_args(x, reset=0, surrogate=0, detach=False):
    n = x.shape[1]
    return (x, torch.rand(n).to(x.dtype), torch.rand(n).to(x.dtype),
            torch.tensor(1.0), torch.tensor(2.0), 0.8187307530779818, 1 - 0.8187307530779818,
            0.9950124791926823, 1 - 0.9950124791926823, 1.8, reset, surrogate, detach, True)


@_interp
@pytest.mark.parametrize("shape", [(1, 1), (3, 8198), (5, 129), (2, 70001)],
                         ids=lambda s: "x".join(map(str, s)))
def test_interpreter_many_programs_and_ragged_blocks(tk, cpu_ops, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 2
    for name, args in (("leaky_scan", _leaky_args(x, learn=True)), ("alif_scan", _alif_args(x))):
        out = getattr(tk, name)(*args)
        assert all(torch.equal(p, q) for p, q in zip(out, cpu_ops[name](*args))), name
        compare_backward(tk, cpu_ops, name, args, out, torch.float32)


@_interp
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_interpreter_without_state_gradients(tk, cpu_ops, dtype):
    torch.manual_seed(1)
    x = (torch.randn(6, 40) * 2).to(dtype)
    for name, args in (("leaky_scan", _leaky_args(x, reset=1, learn=True)),
                       ("alif_scan", _alif_args(x, reset=1))):
        out = getattr(tk, name)(*args)
        compare_backward(tk, cpu_ops, name, args, out, dtype, with_state_grads=False)


def silent_neurons(dtype, device="cpu"):
    """LIF input after which some neurons sit in the subnormal range or at -0.0 (``x [T, 1, 8]``,
    initial state), and a check that the reference's final state shows both."""
    x = torch.zeros(400, 1, 8, device=device)                      # [T, B, F]
    x[0, 0] = torch.tensor([-3.0, 8.0, 1e-3, -1e-3, 1e-5, 5e-38, 0.5, 0.0])
    x[:, 0, 7] = -0.0
    v0 = torch.zeros(1, 8, device=device)
    v0[0, 7] = -0.0                                                # stays -0.0: -0 + -0
    x, v0 = x.to(dtype), v0.to(dtype)

    def shows_both(v):
        v = v.float()
        return (((v.abs() < 1.18e-38) & (v != 0)).any().item()
                and ((v == 0) & torch.signbit(v)).any().item())
    return x, snn5.core.LIFState(v0), shows_both


def same_bits(a, b):
    bits = torch.int16 if a.dtype == torch.bfloat16 else torch.int32
    return torch.equal(a.contiguous().view(bits), b.contiguous().view(bits))


@_interp
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_interpreter_keeps_subnormals_and_signed_zeros(tk, dtype):
    x, state, shows_both = silent_neurons(dtype)
    z_ref, s_ref = pair("LIF", reset="zero")[1](x, state)
    assert shows_both(s_ref.v), "the case reaches no subnormal or no -0.0"
    beta = snn5.core.neurons.decay(5e-3, 1e-3)                       # as dispatch passes it
    f64 = torch.float64
    z, v_last, _ = tk.leaky_scan(x.view(400, 8), state.v.view(8), torch.tensor(beta, dtype=f64),
                                 torch.tensor(1.0 - beta, dtype=f64), torch.tensor(1.0, dtype=f64),
                                 torch.tensor(2.0, dtype=f64), False, 1, 0, False, False)
    assert torch.equal(z, z_ref.view(400, 8))
    assert same_bits(v_last, s_ref.v.view(8)), "bit patterns (subnormals, -0.0) differ"


if HAS_TRITON and INTERPRET:
    import triton
    import triton.language as tl

    from snn5.kernels import triton_ops as _triton_ops

    @triton.jit
    def _round_to_bf16(x_ptr, y_ptr, N, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + offs, mask=offs < N, other=0.0)
        tl.store(y_ptr + offs, _triton_ops._rnd(v, True, True), mask=offs < N)


@_interp
def test_interpreter_bfloat16_rounding_is_round_to_nearest_even():
    """The interpreter's rounding (integer ops) on random bit patterns and the special cases:
    ties to even, overflow to infinity, subnormals, signed zeros, NaN."""
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(-2**31, 2**31 - 1, (1 << 16,), generator=gen, dtype=torch.int64)
    special = torch.tensor([0x3F808000, 0x3F818000, 0x3F80C000, 0x7F7FFFFF, 0x00008000,
                            0x00018000, 0x807F8000, 0x7F800000, 0xFF800000, 0x80000000,
                            0x7FC00000, 0x7F800001])
    x = torch.cat([bits, special]).to(torch.int32).view(torch.float32)
    y = torch.empty_like(x)
    _round_to_bf16[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
    want = x.to(torch.bfloat16).float()
    nan = want.isnan()
    assert torch.equal(nan, y.isnan())
    assert torch.equal(y[~nan].view(torch.int32), want[~nan].view(torch.int32))


@_interp
@pytest.mark.parametrize("surrogate", range(5))
def test_interpreter_surrogate_bounds(tk, cpu_ops, surrogate):
    """At the edges of the triangle (|u| = width) and the rectangle (|u| = width / 2, where the
    width derivative's bound is inclusive) the gradients equal the C++ ones."""
    width = 1.0
    u = torch.tensor([-1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5]) * width
    h = (1.0 + u).repeat(3, 1)                                      # v_th = 1: h - v_th = u
    f64 = torch.float64
    args = (torch.ones_like(h), None, h, None, None, torch.tensor(1.0, dtype=f64),
            torch.tensor(1.0, dtype=f64), torch.tensor(1.0, dtype=f64),
            torch.tensor(width, dtype=f64), True, 2, surrogate, False)
    (gx, _, grads), (gx_cpu, _, grads_cpu) = (tk.leaky_scan_backward(*args),
                                              cpu_ops["leaky_scan_backward"](*args))
    assert rel(gx, gx_cpu) <= 1e-6 and rel(grads, grads_cpu) <= 1e-6, (gx, gx_cpu, grads,
                                                                         grads_cpu)


@_interp
def test_interpreter_empty_neurons(tk):
    x = torch.zeros(4, 0)
    z, v, h = tk.leaky_scan(*_leaky_args(x))
    assert z.shape == (4, 0) and v.shape == (0,) and h.shape == (4, 0)
    gx, gv0, grads = tk.leaky_scan_backward(z, None, h, None, None, *_leaky_args(x)[2:6], False,
                                            0, 0, False)
    assert gx.shape == (4, 0) and torch.equal(grads, torch.zeros(4, dtype=torch.float64))


PTX_SCRIPT = textwrap.dedent("""
    import itertools, json, re
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from snn5.kernels import triton_ops as tk

    def ptx(kernel, dtype, arch, **constexprs):
        scalar_ptrs = {"beta_ptr": "*fp64", "omb_ptr": "*fp64", "v_th_ptr": "*fp32",
                       "width_ptr": "*fp64", "part_ptr": "*fp32"}
        sig = {}
        for name in kernel.arg_names:
            if name in constexprs:
                sig[name] = "constexpr"
            elif name in scalar_ptrs:
                sig[name] = scalar_ptrs[name]
            elif name.endswith("_ptr"):
                sig[name] = "*" + dtype
            else:
                sig[name] = "i32" if name in ("T", "N") else "fp32"
        src = ASTSource(fn=kernel, signature=sig, constexprs=constexprs)
        out = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                             options={"enable_fp_fusion": False, "num_warps": 4})
        return out.asm["ptx"]

    def instructions(text):
        # the floating-point instructions; an fma whose multiplier is the constant +-1 (how
        # sm_80 adds two bfloat16: one rounding, exactly an add) is reported as add-as-fma
        ones, found = set(), set()
        for line in text.splitlines():
            words = [w.strip(",;") for w in line.split() if not w.startswith("@")]
            if len(words) == 3 and words[0] == "mov.b16" and words[2] in ("0x3F80", "0xBF80"):
                ones.add(words[1])
            if words and re.search(r"[.](f32|bf16|bf16x2|f64)$", words[0]):
                op = words[0]
                if op.startswith("fma") and ones & set(words[2:4]):
                    op = "add-as-" + op
                found.add(op)
        return sorted(found)

    report = []
    for arch, bf16 in itertools.product((80, 90), (False, True)):
        dtype = "bf16" if bf16 else "fp32"
        common = dict(BF16=bf16, SOFT=False, BLOCK=128)
        for is_if, reset in itertools.product((False, True), (0, 1, 2)):
            report.append(("if_fwd" if is_if else "leaky_fwd", arch, dtype, instructions(ptx(
                tk._leaky_fwd, dtype, arch, IS_IF=is_if, RESET=reset, SAVE=True, **common))))
        for reset in (0, 1, 2):
            report.append(("alif_fwd", arch, dtype, instructions(ptx(
                tk._alif_fwd, dtype, arch, RESET=reset, SAVE=True, **common))))
        if arch == 90:
            for sg, reset in zip(range(5), (0, 1, 2, 0, 1)):
                flags = dict(DETACH=sg % 2 == 1, HAS_GV=sg != 2, **common)
                report.append(("leaky_bwd", arch, dtype, instructions(ptx(
                    tk._leaky_bwd, dtype, arch, IS_IF=sg == 4, RESET=reset, SG=sg,
                    WANT_BETA=sg != 4, **flags))))
                report.append(("alif_bwd", arch, dtype, instructions(ptx(
                    tk._alif_bwd, dtype, arch, RESET=reset, SG=sg, HAS_GA=sg != 3, **flags))))
    print(json.dumps(report))
""")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
def test_compiled_kernels_have_no_fma_and_keep_subnormals(tmp_path):
    """Compile every kernel for the GPU (no GPU needed) and read the PTX: the forward rounds
    after every multiply and add (``mul.rn``/``add.rn``: no ``fma`` contraction, which ptxas
    may not contract either) and no instruction flushes subnormals (``.ftz``)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", PTX_SCRIPT], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report) == 2 * 2 * 9 + 2 * 10
    for kernel, arch, dtype, instructions in report:
        where = f"{kernel} sm_{arch} {dtype}: {instructions}"
        assert not [i for i in instructions if i.startswith("fma")], where
        assert not [i for i in instructions if ".ftz" in i], where
        if kernel in ("leaky_fwd", "alif_fwd"):          # the charge beta * v + omb * x
            assert "mul.rn.f32" in instructions, where


# ================================================================== GPU: the full op path

gpu = [pytest.mark.gpu,
       pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA"),
       pytest.mark.skipif(HAS_CUDA and not HAS_TRITON, reason=NO_TRITON)]


def _gpu(fn):
    for mark in reversed(gpu):
        fn = mark(fn)
    return fn


TOL = {torch.float32: (1e-4, 1e-3), torch.bfloat16: (5e-2, None)}   # as test_kernel_parity.py


def check_cuda(fused, ref, x, dtype, state=None):
    xa = x.detach().clone().requires_grad_()
    xb = x.detach().clone().requires_grad_()
    za, sa = fused(xa, state)
    zb, sb = ref(xb, state)
    assert torch.equal(za, zb), "spikes differ"
    assert type(sa) is type(sb) and all(torch.equal(p, q) for p, q in zip(sa, sb)), "states differ"
    assert za.dtype == dtype and all(s.dtype == dtype for s in sa)
    g = torch.randn(za.shape, generator=torch.Generator().manual_seed(1)).to(x.device, dtype)
    loss_a = (za * g).float().sum() + sum(s.float().sum() for s in sa)
    loss_b = (zb * g).float().sum() + sum(s.float().sum() for s in sb)
    ga = torch.autograd.grad(loss_a, [xa, *fused.parameters()])
    gb = torch.autograd.grad(loss_b, [xb, *ref.parameters()])
    tol_x, tol_p = TOL[dtype]
    assert rel(ga[0], gb[0]) <= tol_x, f"input grad off by {rel(ga[0], gb[0]):.2e}"
    for (name, _), p, q in zip(fused.named_parameters(), ga[1:], gb[1:]):
        assert torch.isfinite(p).all(), name
        if tol_p is not None:
            assert rel(p, q) <= tol_p, f"{name} grad off by {rel(p, q):.2e}"


@_gpu
@pytest.mark.parametrize("family, reset, surrogate, dtype, detach", MATRIX, ids=ids)
def test_triton_equals_reference_on_cuda(family, reset, surrogate, dtype, detach):
    torch.manual_seed(zlib.crc32(f"{family}{reset}{surrogate.__name__}{dtype}{detach}".encode()))
    fused, ref = pair(family, "cuda", reset=reset, surrogate=surrogate(learnable=True),
                      learn_v_th=True, detach_reset=detach, backend="triton")
    x = (torch.randn(12, 3, 37, device="cuda") * 1.5).to(dtype)
    check_cuda(fused, ref, x, dtype)


@_gpu
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (9, 1, 3), (7, 2, 3, 5, 5), (3, 2, 4099),
                                   (4, 3, 30011)], ids=lambda s: "x".join(map(str, s)))
def test_cuda_shapes_and_fixed_parameters(family, shape):
    torch.manual_seed(0)
    fused, ref = pair(family, "cuda", backend="triton")
    check_cuda(fused, ref, torch.randn(shape, device="cuda") * 2, torch.float32)


@_gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_non_contiguous_input_given_state_and_expanded_input(family):
    torch.manual_seed(0)
    fused, ref = pair(family, "cuda", learn_v_th=True, backend="triton")
    x = (torch.randn(6, 11, 4, device="cuda") * 2).transpose(1, 2)     # [6, 4, 11]
    assert not x.is_contiguous()
    check_cuda(fused, ref, x, torch.float32, state=random_state(fused, x))
    x = (torch.rand(1, 4, 10, device="cuda") * 3).expand(8, 4, 10)      # stride 0 over time
    check_cuda(fused, ref, x, torch.float32)


@_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_cuda_inference_subnormals_and_signed_zeros(dtype):
    """No grad (nothing saved); neurons decaying into the subnormal range or sitting at -0.0
    keep the reference's bit patterns (nothing is flushed to zero)."""
    x, state, shows_both = silent_neurons(dtype, "cuda")
    fused, ref = pair("LIF", "cuda", reset="zero", backend="triton")
    with torch.no_grad():
        za, sa = fused(x, state)
        zb, sb = ref(x, state)
    assert shows_both(sb.v), "the case reaches no subnormal or no -0.0"
    assert torch.equal(za, zb)
    assert same_bits(sa.v, sb.v)


@_gpu
def test_auto_picks_triton_on_cuda():
    from snn5.kernels import active_backends, fused_blocker

    assert active_backends()["cuda"].startswith("fused Triton kernel")
    auto, ref = pair("LIF", "cuda")
    x = torch.randn(10, 2, 33, device="cuda") * 2
    assert fused_blocker("lif", x, auto.params(), auto.surrogate, None) is None
    assert torch.equal(auto(x)[0], ref(x)[0])


@_gpu
@pytest.mark.parametrize("requires_grad", [False, True])
def test_cuda_opcheck(requires_grad):
    from snn5.kernels import ops

    def s(v):
        return torch.tensor(v, device="cuda", requires_grad=requires_grad)

    def t(*shape, scale=1.0):
        return (torch.randn(shape, device="cuda") * scale).requires_grad_(requires_grad)

    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(ops.leaky_scan, (t(5, 7, scale=2.0), t(7), s(0.6), s(0.4), s(1.0),
                                           s(2.0), False, 0, 0, False, True), test_utils=utils)
    torch.library.opcheck(ops.alif_scan, (t(5, 7, scale=2.0), t(7), torch.rand(7, device="cuda"),
                                          s(1.0), s(2.0), 0.6, 0.4, 0.9, 0.1, 1.8, 0, 0, False,
                                          True), test_utils=utils)


@_gpu
def test_cuda_torch_compile_traces_through_the_ops():
    torch.manual_seed(0)
    net = snn5.Sequential(torch.nn.Linear(8, 16), snn5.LIF(2e-3, learn_v_th=True),
                          torch.nn.Linear(16, 4), snn5.ALIF(5e-3)).cuda()
    x = torch.randn(6, 3, 8, device="cuda")
    eager_out, _ = net(x)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    out, _ = torch.compile(net, backend="aot_eager", fullgraph=True)(x)
    assert torch.equal(out, eager_out)
    out.sum().backward()
    for p, g in zip(net.parameters(), eager_grads):
        assert torch.allclose(p.grad, g, atol=1e-6)


@_gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_runs_on_the_inputs_device():
    fused, ref = pair("ALIF", "cuda:1", backend="triton")
    check_cuda(fused, ref, torch.randn(5, 2, 9, device="cuda:1") * 2, torch.float32)
