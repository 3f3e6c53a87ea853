"""Read-only recording of what spiking layers emit, through forward hooks."""

from __future__ import annotations

from types import TracebackType

from torch import Tensor, nn

from snn5.nn.neurons import Neuron


def spiking_layers(model: nn.Module) -> dict[str, Neuron]:
    """Sequence neurons of ``model`` that emit spikes, by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Neuron) and m.spiking}


class SpikeRecorder:
    """Collect the output spikes ``[T, B, *F]`` of every spiking layer during forward passes.

    Use as a context manager; ``spikes[name]`` holds the layer's output of the last call.
    With ``detach=False`` the tensors keep their graph (for activity regularisers).

    Example:
        >>> with SpikeRecorder(model) as rec:
        ...     logits = model(x)
        >>> {name: z.mean().item() for name, z in rec.spikes.items()}   # firing rates
    """

    def __init__(self, model: nn.Module, *, detach: bool = True) -> None:
        self.layers = spiking_layers(model)
        self.detach = detach
        self.spikes: dict[str, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> SpikeRecorder:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: tuple) -> None:
            z = output[0]
            self.spikes[name] = z.detach() if self.detach else z
        return hook

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
