"""One module per command: ``register(subparsers)`` adds its parser, whose ``func(args)``
parses nothing more, calls :mod:`dynfix.api` (or :mod:`dynfix.workflow`) and prints.

Each ``run`` imports the API when it runs, not when the module loads: ``dynfix --help``
loads every command module, and the API pulls in numpy, amaranth, onnx and cocotb (about a
second).
"""

#: The MODEL argument's help, shared by every command that takes one.
MODEL_HELP = "an .onnx file, a dynfix .yaml file, or 'digits' (the bundled model)"
#: The --bits option's help.
BITS_HELP = ("bit widths: N for all (16, 8, 6, 4), A/B for A-bit data and conv weights "
             "with B-bit FC weights (8/4), or A/B/C for A-bit data, B-bit conv and C-bit FC "
             "weights (8/4/4); default 8")
