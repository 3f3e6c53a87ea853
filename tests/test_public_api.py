"""Every public name of snn5 and its packages imports and is what its __all__ promises."""

import importlib

import pytest

PACKAGES = ["snn5", "snn5.core", "snn5.nn", "snn5.models", "snn5.data", "snn5.metrics",
            "snn5.train.surrogate", "snn5.train.plasticity", "snn5.train.conversion",
            "snn5.train.distill", "snn5.config", "snn5.runs", "snn5.compress", "snn5.export",
            "snn5.hpo"]


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_import(name):
    module = importlib.import_module(name)
    assert module.__all__, f"{name} has an empty __all__"
    assert len(set(module.__all__)) == len(module.__all__)
    for public in module.__all__:
        assert getattr(module, public) is not None, f"{name}.{public}"


def test_importing_snn5_has_no_side_effects():
    import subprocess
    import sys
    code = ("import logging, torch; s = torch.get_rng_state(); n = torch.get_num_threads(); "
            "import snn5; assert torch.equal(s, torch.get_rng_state()); "
            "assert n == torch.get_num_threads(); assert not logging.getLogger().handlers; "
            "import sys; assert 'matplotlib' not in sys.modules and 'sklearn' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
