"""The layer registry: one module per layer kind (see ``docs/architecture.md``, "Adding a
layer kind").

:data:`KINDS` maps each kind's ``op`` to its class; the classes are re-exported here and
from :mod:`dynfix.quant.ir`. What a kind is and must provide: :mod:`.base`.
"""

from .base import KINDS, Compute, EngineRole, Layer, Shape, register
from .conv import Conv2d
from .linear import Linear
from .relu import ReLU
from .clip import Clip
from .pool import Pool2d
from .maxpool import MaxPool2d
from .avgpool import AvgPool2d
from .gap import GlobalAvgPool
from .flatten import Flatten
from .affine import Affine
from .add import Add
from .softmax import Softmax
from .sigmoid import Sigmoid
from .leaky_relu import LeakyReLU
from .concat import Concat
from .resize import Resize

__all__ = ["KINDS", "Compute", "EngineRole", "Layer", "Shape", "register", "Conv2d", "Linear",
           "ReLU", "Clip", "Pool2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "Flatten",
           "Affine", "Add", "Softmax", "Sigmoid", "LeakyReLU", "Concat", "Resize"]
