"""L4 export: trained models to NIR and back (:mod:`snn5.export.nir`).

Public API:
    export_nir: a :class:`snn5.models.SpikingClassifier` as a ``nir.NIRGraph`` (exact
    continuous-time parameters for the run's dt, the rest in the ``"snn5"`` metadata);
    import_nir: a graph or ``.nir`` file back to a model; NIRExportError: what NIR or the
    importer cannot express, with the fix; META_KEY: the metadata namespace.
"""

from snn5.export.nir import META_KEY, NIRExportError, export_nir
from snn5.export.nir_import import import_nir
from snn5.export.runtime import EventRunResult, EventRuntime, run_events

__all__ = ["META_KEY", "NIRExportError", "export_nir", "import_nir",
           "EventRunResult", "EventRuntime", "run_events"]
