"""dynfix: dynamic fixed-point CNN accelerators for FPGAs, from a trained model to a bitstream.

The flow is model -> quantized model -> engine config + program -> Verilog -> simulation and
synthesis reports. The subpackages follow it: :mod:`dynfix.quant` (IR, loaders, float and
integer models, quantizer), :mod:`dynfix.hw` (Amaranth engine and compiler),
:mod:`dynfix.sim` (cocotb testbenches) and :mod:`dynfix.boards` (board files, fitting,
synthesis).
"""

__version__ = "0.1.0"
