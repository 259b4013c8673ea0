"""dynfix: dynamic fixed-point CNN accelerators for FPGAs, from a trained model to a bitstream.

The flow is model -> quantized model -> engine config + program -> Verilog -> simulation and
synthesis reports. The subpackages follow it: :mod:`dynfix.quant` (IR, loaders, float and
integer models, quantizer), :mod:`dynfix.hw` (compiler and Amaranth engine),
:mod:`dynfix.sim` (cocotb harness) and :mod:`dynfix.boards` (board files, fitting, board-side
gateware, synthesis). On top of them: :mod:`dynfix.api` (each stage as a function),
:mod:`dynfix.workflow` (the whole flow) and :mod:`dynfix.commands` (the CLI).

The API mirrors the CLI: :func:`load_model`, :func:`quantize`, :func:`fit`, :func:`generate`,
:func:`simulate`, :func:`synth`, :func:`evaluate`, :func:`infer`, :func:`compress`,
:func:`flow` and :func:`sweep` (a design-space sweep on Dask), each returning a result
dataclass. They are imported on first use, so ``import dynfix`` stays fast (numpy,
amaranth, onnx and cocotb take about a second).
"""

__version__ = "0.1.0"

__all__ = ["DynfixError", "load_model", "quantize", "fit", "generate", "simulate", "synth",
           "evaluate", "infer", "compress", "flow", "sweep", "QuantizeResult", "GenerateResult",
           "SimulateResult", "EvaluateResult", "CompressResult", "FlowResult", "SweepResult"]

from dynfix.errors import DynfixError  # noqa: E402

_WORKFLOW = ("flow", "FlowResult")
_SWEEP = ("sweep", "SweepResult")


def __getattr__(name: str):
    """Lazy access to the API (``dynfix.quantize`` imports :mod:`dynfix.api` on first use)."""
    if name in _WORKFLOW:
        from dynfix.workflow import run
        return getattr(run, name)
    if name in _SWEEP:
        from dynfix.workflow import sweep
        return getattr(sweep, name)
    if name in __all__:
        from dynfix import api
        return getattr(api, name)
    raise AttributeError(f"module 'dynfix' has no attribute {name!r}")
