"""dynfix: dynamic fixed-point CNN accelerators for FPGAs, from a trained model to a bitstream.

The flow is model -> quantized model -> engine config + program -> Verilog -> simulation and
synthesis reports. The subpackages follow it: :mod:`dynfix.quant` (IR, loaders, float and
integer models, quantizer), :mod:`dynfix.hw` (Amaranth engine and compiler),
:mod:`dynfix.sim` (cocotb testbenches) and :mod:`dynfix.boards` (board files, fitting,
synthesis).

The Python API (:mod:`dynfix.api`) mirrors the CLI: :func:`load_model`, :func:`quantize`,
:func:`generate`, :func:`simulate`, :func:`synth` and :func:`flow`, each returning a result
dataclass. They are imported on first use, so ``import dynfix`` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["DynfixError", "load_model", "quantize", "generate", "simulate", "synth", "flow",
           "QuantizeResult", "GenerateResult", "SimulateResult", "FlowResult"]

from dynfix.errors import DynfixError  # noqa: E402


def __getattr__(name: str):
    """Lazy access to the API (``dynfix.quantize`` imports :mod:`dynfix.api` on first use)."""
    if name == "FlowResult":
        from dynfix.flow import FlowResult
        return FlowResult
    if name in __all__:
        from dynfix import api
        return getattr(api, name)
    raise AttributeError(f"module 'dynfix' has no attribute {name!r}")
