"""Building the CPU kernels: a failed build falls back to the reference with one warning."""

import subprocess
import sys
import textwrap


def test_broken_build_falls_back_to_the_reference_with_one_warning(tmp_path):
    bad = tmp_path / "broken.cpp"
    bad.write_text("this is not C++\n")
    code = textwrap.dedent(f"""
        import io, logging
        stream = io.StringIO()
        logging.basicConfig(stream=stream, level=logging.WARNING)
        import snn5.kernels.build as build
        build.SOURCES = [build.Path({str(bad)!r})]
        import torch, snn5
        from snn5.kernels import active_backends
        lif, ref = snn5.LIF(), snn5.LIF(backend="reference")
        x = torch.randn(6, 2, 5)
        for _ in range(3):
            assert torch.equal(lif(x)[0], ref(x)[0])
        assert active_backends()["cpu"].startswith("reference")
        print(stream.getvalue().count("could not be built"))
    """)
    env = {"SNN5_KERNEL_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1"


def test_disabled_kernels_use_the_reference(tmp_path):
    code = ("import torch, snn5; from snn5.kernels import active_backends; "
            "assert snn5.LIF()(torch.randn(3, 2, 4))[0].shape == (3, 2, 4); "
            "print(active_backends()['cpu'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"SNN5_DISABLE_KERNELS": "1", "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reference (disabled by $SNN5_DISABLE_KERNELS)" in done.stdout
