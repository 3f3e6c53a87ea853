"""L7 hpo: hyper-parameter search over a run config's ``search_space:`` with Optuna."""

from snn5.hpo.space import ParamKind, ParamSpec, SearchSpaceError, parse_search_space
from snn5.hpo.study import Pruner, Sampler, StudyError, TuneSpec, load_tune_config, tune

__all__ = [
    "ParamKind", "ParamSpec", "Pruner", "Sampler", "SearchSpaceError", "StudyError", "TuneSpec",
    "load_tune_config", "parse_search_space", "tune",
]
