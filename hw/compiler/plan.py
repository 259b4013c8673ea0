"""Planning: the model's graph fused into engine groups, and each group's loop counts.

A model runs on the engine as a sequence of *groups*: a Conv2d or Linear layer with optional
ReLUs and Clips (ReLU6) and an optional non-overlapping MaxPool, or with a residual Add
(and ReLUs / Clips after it) whose other input is already in map memory (Flatten is free:
the map layout already is the flatten order; so is a nearest-neighbour Resize by 2, which
the group after it reads as a view of the map before it, :attr:`LayerPlan.resize`). The
group's ReLUs and Clips and the saturation to its output width become one clamp range in
the requantizer (:meth:`LayerPlan.clamp_range`); the Add's, one in the residual-add stage. A
Linear layer runs as a convolution whose kernel covers its whole input map. A trailing
Softmax stays on the host. Anything else is rejected with one error naming every layer
(:func:`plan_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynfix.errors import DynfixError
from dynfix.quant import fixed
from dynfix.quant.int_model import MapFormat
from dynfix.quant.ir import Add, AvgPool2d, Concat, Conv2d, Layer, MaxPool2d, Model
from dynfix.quant.layers import EngineRole
from dynfix.quant.lower import lower
from ..config import EngineConfig

Shape3 = tuple[int, int, int]
#: The kinds of the program entries that only move a map (``m_bulk``: the host load strips
#: of an input and the unload strips of an output in bulk memory): no weights, no biases,
#: no sequencer run.
TRANSFERS = ("load", "unload")


@dataclass(frozen=True)
class ConcatSlot:
    """Where a group writes a Concat's input: into the Concat's map ``tensor`` (of shape
    ``shape``) from channel ``offset`` on (``docs/engine.md``, "Concat")."""

    tensor: str
    shape: Shape3
    offset: int


@dataclass
class LayerPlan:
    """One fused group as the engine runs it."""

    name: str                       # the Conv2d / Linear layer
    layers: list[str]               # every model layer folded into the group
    kind: str                       # "conv", "dwconv" (depthwise), "linear"; or a
                                    # TRANSFERS kind
    in_shape: Shape3                # C, H, W of the map it reads
    out_shape: Shape3               # M, H', W' of the map it writes (after pooling)
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pool: int = 1                   # max-pool window columns (1: none), and rows unless
    pool_h: int = 0                 # a window's rows differ from them (a MaxPool1d: 1 x k)
    acts: list[Layer] = field(default_factory=list)     # its ReLUs and Clips, in model order
    input: str = ""                 # the stored tensor it reads
    output: str = ""                # the tensor it writes (its last layer)
    add: Add | None = None          # a residual Add fused into the group
    shortcut: str = ""              # the Add's other input (a stored tensor)
    add_index: int = 0              # which input of the Add the group's own result is
    shared: bool = False            # every kernel tap has the same weights (stored once)
    window: int = 0                 # a depthwise group on the window datapath: its side K
    avg: int = 0                    # an average pool run as a depthwise conv: its 2**s cells
    add_acts: list[Layer] = field(default_factory=list)   # ReLUs and Clips after the Add
    slope: Layer | None = None      # a LeakyReLU after its clamps: the requantizer's slope
    resize: tuple[int, int] = (1, 1)    # reads its input through a nearest-neighbour Resize:
                                    # the factors (rows, columns) of the view the sequencer
                                    # walks (``in_shape`` is the view's, ``input`` the map
                                    # stored before the Resize); (1, 1): the map as stored
    macs: int = 0                   # useful multiply-accumulates (the model's count)
    strip: int = 0                  # with maps in bulk memory: the strip of the group's
                                    # output rows this plan computes (hw/compiler/strips.py)
    slot: ConcatSlot | None = None  # it writes its output into a Concat's map there
    spread: tuple[int, ...] = ()    # where each of its input channels lies in the map it
                                    # reads (a Concat's, spread_concats); empty: in order
    entry: dict[str, int] = field(default_factory=dict)
    weights: np.ndarray | None = field(default=None, repr=False)   # M, C, kh, kw (int)
    biases: np.ndarray | None = field(default=None, repr=False)    # M (int)
    shifts: np.ndarray | None = field(default=None, repr=False)    # M data shifts (int)
    bias_shift: int = 0             # the units of ``biases`` (the program's bias shift)
    acc_bits: int = 0               # the engine's accumulator width for the group

    @property
    def writes(self) -> str:
        """The stored map the group writes: its output's, or the Concat's it is part of."""
        return self.slot.tensor if self.slot is not None else self.output

    @property
    def map_shape(self) -> Shape3:
        """C, H, W of the map :attr:`writes` names."""
        return self.slot.shape if self.slot is not None else self.out_shape

    def out_word(self, lanes: int) -> int:
        """The group's first word in the pixels of :attr:`writes`: its channel offset in a
        Concat's map (a multiple of ``lanes``, :func:`spread_concats`), else 0."""
        return self.slot.offset // lanes if self.slot is not None else 0

    @property
    def stored_shape(self) -> Shape3:
        """C, H, W of the map in memory: ``in_shape``, or the map a Resize view enlarges."""
        c, h, w = self.in_shape
        return (c, h // self.resize[0], w // self.resize[1])

    @property
    def conv_out(self) -> tuple[int, int]:
        """Conv pixels computed (rows, columns): the pooled map times the pool size."""
        ph, pw = self.pool_hw
        return self.out_shape[1] * ph, self.out_shape[2] * pw

    @property
    def pool_hw(self) -> tuple[int, int]:
        """The max-pool window's rows and columns ((1, 1): no pooling)."""
        return self.pool_h or self.pool, self.pool

    def clamp_range(self, bw: int, fl: int, zp: int = 0) -> tuple[int, int]:
        """The one range ``[lo, hi]`` the requantizer clamps to, in the group's output format
        (``bw``, ``fl``, offset ``zp``): the saturation to ``bw`` bits, then the range of
        every clamp layer of the group in order (``Layer.clamp``: a ReLU's ``[zp, qmax]``,
        the integer of a real 0 is ``zp``; a Clip's ``[lo_q, hi_q]``).

        Clamps compose into one clamp: clamping ``[lo, hi]`` by ``[l, h]`` gives
        ``[clamp(lo, l, h), clamp(hi, l, h)]`` (disjoint ranges give a constant, as applying
        them one after the other does). A clamp is monotonic, so it commutes with max-pooling
        (``max(clamp(a), clamp(b)) == clamp(max(a, b))``): where the ReLU or Clip sits
        relative to the group's MaxPool does not matter, only the order of the clamps."""
        lo, hi = fixed.qmin(bw), fixed.qmax(bw)
        for act in self.acts:
            l, h = act.clamp(MapFormat(bw, fl, zp))
            lo, hi = min(max(lo, l), h), min(max(hi, l), h)
        return lo, hi


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _as_map(shape: tuple[int, ...]) -> Shape3 | None:
    if len(shape) == 3:
        return tuple(int(d) for d in shape)
    if len(shape) == 1:
        return (int(shape[0]), 1, 1)
    return None


def plan_groups(model: Model) -> tuple[list[LayerPlan], str]:
    """Fuse the model's DAG into engine groups, in the order of their Conv/Linear layers;
    raise one DynfixError listing every problem.

    A layer after a Conv/Linear joins its group when it reads the group's latest tensor and
    nothing else reads that tensor: ReLU, Clip, MaxPool, Flatten, and a residual Add, which
    is fused into the group that produces one of its inputs (the later of the two, so the
    other input, the *shortcut*, is already in memory). Every other tensor a Conv/Linear or
    an Add reads must be a group's output or the model input: those are the maps the engine
    stores. The graph is first lowered (:func:`dynfix.quant.lower.lower`: a global average
    pool before a Linear folds into it), as the integer model does. Returns the groups and
    the name of the layer whose output the engine produces.
    """
    model = lower(model)
    problems: list[str] = []
    plans: list[LayerPlan] = []
    owner: dict[str, LayerPlan] = {}          # tensor -> the group it belongs to
    alias: dict[str, str] = {}                # a Flatten of a stored map -> that map
    joined: set[str] = set()                  # the Concats: maps their inputs write into
    views: dict[str, Layer] = {}              # a Resize of a stored map -> the Resize
    shapes = {model.input_name: _as_map(tuple(model.input_shape))}
    if shapes[model.input_name] is None:
        problems.append(f"input {model.input_name!r}: shape {tuple(model.input_shape)} is "
                        f"neither C x H x W nor flat")
    consumers = {t: [c.name for c in model.consumers(t)] for t in
                 [model.input_name] + [layer.name for layer in model.layers]}
    last = len(model.layers) - 1

    def stored(t: str, what: str) -> Shape3 | None:
        """The map shape of tensor ``t`` if the engine stores it (else note a problem)."""
        t = alias.get(t, t)
        g = owner.get(t)
        if t == model.input_name or t in joined or (g is not None and g.output == t):
            return shapes.get(t) or (1, 1, 1)
        if g is None:
            return None                 # made by a layer already reported
        problems.append(f"{what} reads {t!r}, which lies inside the fused group of "
                        f"{g.name} (a branch from before that group's end)")
        return None

    def read(t: str, what: str) -> tuple[str, Shape3 | None, tuple[int, int]]:
        """What a group reading tensor ``t`` reads: the stored map, the shape it walks (a
        Resize's view, twice the stored map's size per resized axis) and the view's factors
        ((1, 1): the map as stored)."""
        t = alias.get(t, t)
        if t in views:
            src = views[t].inputs[0]
            return alias.get(src, src), shapes[t], tuple(views[t].scale)
        return t, stored(t, what), (1, 1)

    def extends(layer: Layer, t: str) -> LayerPlan | None:
        """The group ``layer`` can join through tensor ``t``, if any."""
        g = owner.get(t)
        return g if g is not None and g.output == t and consumers[t] == [layer.name] else None

    for idx, layer in enumerate(model.layers):
        what = f"{layer.name} ({type(layer).__name__})"
        role = layer.engine
        viewed = [alias.get(t, t) for t in layer.inputs if alias.get(t, t) in views]
        if viewed and role not in (EngineRole.GROUP, EngineRole.AVERAGE, EngineRole.LAYOUT,
                                   EngineRole.CONCAT):
            problems.append(f"{what}: reads the Resize {viewed[0]!r}; the engine stores no "
                            f"resized map, only a Conv/Linear layer (or an average pool) "
                            f"reads one, as a view of the map before the Resize")
            continue
        if role is EngineRole.GROUP:
            src, in_shape, factors = read(layer.inputs[0], what)
            in_shape = in_shape or (1, 1, 1)
            if not layer.fully_connected:
                if tuple(layer.dilation) != (1, 1):
                    problems.append(f"{what}: dilation {tuple(layer.dilation)} (only 1)")
                g = LayerPlan(layer.name, [layer.name], _conv_kind(layer), in_shape,
                              tuple(layer.out_shape), tuple(layer.kernel),
                              tuple(layer.stride), tuple(layer.pads),
                              macs=layer.macs(model.in_shape(idx)))
            else:
                c, h, w = in_shape
                if c * h * w != int(layer.weight.shape[1]) and factors == (1, 1):
                    c, h, w = int(layer.weight.shape[1]), 1, 1
                g = LayerPlan(layer.name, [layer.name], "linear", (c, h, w),
                              (int(layer.weight.shape[0]), 1, 1), (h, w),
                              macs=layer.macs(model.in_shape(idx)))
            g.input, g.output, g.resize = src, layer.name, factors
            plans.append(g)
        elif role is EngineRole.AVERAGE:
            src, in_shape, factors = read(layer.inputs[0], what)
            g = _avg_group(layer, tuple(model.in_shape(idx)), problems, what)
            if g is None or in_shape is None:
                continue
            g.input, g.output, g.resize = src, layer.name, factors
            plans.append(g)
        elif role is EngineRole.VIEW:
            src = alias.get(layer.inputs[0], layer.inputs[0])
            if src == model.input_name:
                problems.append(f"{what}: resizes the model input (the engine reads a "
                                f"resized map only from a group's output; the image loads "
                                f"as it is)")
            elif stored(src, what) is not None:
                views[layer.name] = layer
                shapes[layer.name] = tuple(layer.out_shape)
            continue
        elif role is EngineRole.HOST and idx == last:
            continue                            # on the host
        elif role is EngineRole.CONCAT:
            if all(later.host for later in model.layers[idx + 1:]):
                problems.append(f"{what}: the model's output (the engine streams out one "
                                f"group's map; add a layer after it, or end before it)")
                continue
            _plan_concat(layer, model, plans, owner, consumers, read, problems, what)
            joined.add(layer.name)
            shapes[layer.name] = _as_map(layer.out_shape)
            continue
        elif role is EngineRole.RESIDUAL:
            g = _fuse_add(layer, [extends(layer, t) for t in layer.inputs], plans, owner,
                          problems)
            if g is not None:
                g.add_index = layer.inputs.index(g.output)
                other = layer.inputs[1 - g.add_index]
                if stored(other, what) is not None:
                    g.add, g.shortcut = layer, alias.get(other, other)
        elif role in (EngineRole.CLAMP, EngineRole.SLOPE, EngineRole.POOL, EngineRole.LAYOUT):
            g = extends(layer, layer.inputs[0])
            if g is None and role is EngineRole.LAYOUT:
                alias[layer.name] = alias.get(layer.inputs[0], layer.inputs[0])
                continue
            if g is None:
                if layer.inputs[0] in owner:
                    problems.append(f"{what}: reads {layer.inputs[0]!r}, which other layers "
                                    f"read too (a branch before the end of a fused group)")
                else:
                    problems.append(f"{what}: not after a Conv/Linear layer")
                continue
            if role is EngineRole.POOL:
                why = _pool_problems(layer, g)
                if why:
                    problems.append(f"{what}: {'; '.join(why)}")
                    continue
                kh, g.pool = layer.kernel
                g.pool_h = kh if kh != g.pool else 0
                g.out_shape = tuple(layer.out_shape)
            elif role is EngineRole.CLAMP:
                if g.slope is not None:
                    problems.append(f"{what}: after the LeakyReLU {g.slope.name} of the same "
                                    f"group (the requantizer clamps before its slope stage)")
                    continue
                (g.add_acts if g.add is not None else g.acts).append(layer)
            elif role is EngineRole.SLOPE:
                why = _slope_problems(g)
                if why:
                    problems.append(f"{what}: {why}")
                    continue
                g.slope = layer
        else:
            problems.append(f"{what}: "
                            + (layer.refusal or f"op {layer.op!r} is not supported by the engine"))
            continue
        if g is not None:
            if layer.name not in g.layers:
                g.layers.append(layer.name)
            g.output = layer.name
            owner[layer.name] = g
            shapes[layer.name] = g.out_shape
    out_name = next((layer.name for layer in reversed(model.layers)
                     if not layer.host), model.input_name)
    if not plans:
        problems.append("no Conv/Linear layer")
    elif alias.get(out_name, out_name) in views:
        problems.append(f"the output {out_name!r} is a Resize, which the engine never "
                        f"stores (only a Conv/Linear layer reads it, as a view)")
    elif not problems and owner.get(out_name) is not plans[-1]:
        problems.append(f"the output {out_name!r} is not produced by the last Conv/Linear "
                        f"group")
    if problems:
        raise DynfixError(f"model {model.name!r} cannot run on the engine: "
                          + "; ".join(problems))
    return plans, out_name


def _plan_concat(layer: Concat, model: Model, plans: list[LayerPlan],
                 owner: dict[str, LayerPlan], consumers: dict[str, list[str]], read,
                 problems: list[str], what: str) -> None:
    """A Concat costs no pass of its own: the group that makes an input writes it at its
    channel offset of the Concat's map (:class:`ConcatSlot`), when that group's output is
    the input itself and nothing else reads it. Any other input (the model input, a map
    other layers read too, a residual group's output, whose shortcut it reads at its own
    pixel stride, another Concat, a Flatten of a 1 x 1 map, a map joined twice) is copied
    into its place by :func:`identity_copy`, a group of its own appended here, after every
    input is computed and before anything reads the Concat; so is a Resize (U-Net's
    ``up -> concat``): its copy reads the map before it as a view (``read``), as any group
    reading a Resize does."""
    out = _as_map(layer.out_shape)
    for k, (t, c0) in enumerate(zip(layer.inputs, layer.offsets(model.in_shapes(layer)))):
        src, shape, factors = read(t, what)
        if shape is None:
            continue
        if factors != (1, 1):
            copy = identity_copy(f"{layer.name}.copy{k}", t, shape,
                                 ConcatSlot(layer.name, out, c0), src)
            copy.resize = factors
            plans.append(copy)
            continue
        if tuple(shape[1:]) != tuple(out[1:]):
            problems.append(f"{what}: joins {t!r}, the flattened {'x'.join(map(str, shape))} "
                            f"map (the engine joins maps along their channels, not "
                            f"flattened ones)")
            continue
        slot = ConcatSlot(layer.name, out, c0)
        g = owner.get(t)
        if (g is not None and g.output == t and consumers[t] == [layer.name]
                and layer.inputs.count(t) == 1 and g.add is None and g.slot is None):
            g.slot = slot
        else:
            plans.append(identity_copy(f"{layer.name}.copy{k}", t, shape, slot, src))


def identity_copy(name: str, tensor: str, shape: Shape3, slot: ConcatSlot | None,
                  src: str = "") -> LayerPlan:
    """A group that copies stored map ``src`` (default: ``tensor`` itself), whose values
    are those of ``tensor`` (``shape``), unchanged into ``slot`` (or into a map of its
    own: None). It is an average pool of one cell (a depthwise 1 x 1 convolution with unit
    weights, no bias and a data shift of 0 in the map's own format, ``avg_format``), so it
    is exact for any format and offset, and needs nothing of the engine that an average
    pool does not."""
    return LayerPlan(name, [tensor], "dwconv", shape, shape, (1, 1), avg=1,
                     input=src or tensor, output=tensor, slot=slot)


def concat_layouts(plans: list[LayerPlan], lanes: int
                   ) -> dict[str, tuple[Shape3, dict[int, int], np.ndarray]]:
    """How each Concat's map is laid out on an engine of ``lanes`` lanes, for those whose
    inputs do not all start at a map word's first lane (the write-back starts a group's
    channels there): every input then starts at the next word, past a few unused lanes.
    By the Concat's name: the map's padded shape, each input's offset -> its padded one,
    and each of the Concat's channels' padded position."""
    writers: dict[str, list[LayerPlan]] = {}
    for p in plans:
        if p.slot is not None:
            writers.setdefault(p.slot.tensor, []).append(p)
    out = {}
    for tensor, ws in writers.items():
        ws.sort(key=lambda p: p.slot.offset)
        if all(p.slot.offset % lanes == 0 for p in ws):
            continue
        at, moved, where = 0, {}, []
        for p in ws:
            moved[p.slot.offset] = at
            where.extend(range(at, at + p.out_shape[0]))
            at = _ceil_div(at + p.out_shape[0], lanes) * lanes
        _, h, w = ws[0].slot.shape
        out[tensor] = ((where[-1] + 1, h, w), moved, np.array(where))
    return out


def unspread(plans: list[LayerPlan], lanes: int) -> list[str]:
    """The groups that cannot read a Concat's map laid out with unused lanes on an engine of
    ``lanes`` lanes (:func:`concat_layouts`): a depthwise group (it maps each channel onto
    its own) and a residual group reading it as its shortcut; a conv or a Linear reads
    them with zero weights."""
    layouts = concat_layouts(plans, lanes)
    return [f"{p.name} reads Concat {p.input if p.input in layouts else p.shortcut!r}, whose "
            f"inputs start inside a map word on this engine (channel offsets not multiples "
            f"of the lanes), as a {'shortcut' if p.shortcut in layouts else 'depthwise group'}"
            for p in plans if p.shortcut in layouts
            or (p.input in layouts and p.kind not in ("conv", "linear"))]


def spread_concats(plans: list[LayerPlan], lanes: int) -> list[str]:
    """Lay every Concat's map out as :func:`concat_layouts` says: its writers' slots move
    to their padded offsets, and the groups reading it get the padded map as their input
    and, in ``spread``, where each of their input channels lies (their weights get zeros
    at the unused lanes, :func:`spread_weights`). Returns the problems of
    :func:`unspread` (empty: every reader takes the layout)."""
    problems = unspread(plans, lanes)
    layouts = concat_layouts(plans, lanes)
    for p in plans:
        if p.slot is not None and p.slot.tensor in layouts:
            shape, moved, _ = layouts[p.slot.tensor]
            p.slot = ConcatSlot(p.slot.tensor, shape, moved[p.slot.offset])
        if p.input in layouts and p.kind in ("conv", "linear"):
            shape, _, where = layouts[p.input]
            # The padded map's channels (rows and columns: the group's own, a Resize
            # view's too).
            p.in_shape = (shape[0],) + tuple(p.in_shape[1:])
            p.spread = tuple(int(c) for c in where)
    return problems


def spread_weights(w: np.ndarray, spread: tuple[int, ...], channels: int) -> np.ndarray:
    """Weights ``(M, C, kh, kw)`` over a map whose channel ``c`` lies at ``spread[c]`` of
    ``channels`` (zeros at the others; ``spread`` empty: ``w`` itself)."""
    if not spread:
        return w
    out = np.zeros((w.shape[0], channels) + w.shape[2:], w.dtype)
    out[:, list(spread)] = w
    return out


def _avg_group(layer: AvgPool2d, in_shape: Shape3, problems: list[str],
               what: str) -> LayerPlan | None:
    """An average pool the engine runs as a depthwise convolution with unit weights and a
    data shift of ``s`` (``docs/arithmetic.md``, "Average pooling on the engine"): every
    window must have the same ``2**s`` cells in its divisor (``count_include_pad`` or no
    padding, no partial windows), since the engine divides by a shift."""
    c, h, w = in_shape
    out_hw = tuple(layer.out_shape[1:])
    n = np.unique(layer.divisor((h, w), out_hw))
    if len(n) != 1 or int(n[0]) & (int(n[0]) - 1):
        cells = "/".join(str(int(v)) for v in n)
        problems.append(f"{what}: average pool of {cells} cells per window (the engine "
                        f"divides by a shift: windows of 2**k cells, the same at every "
                        f"output, i.e. count_include_pad or no padding, no partial windows)")
        return None
    kh, kw = layer.kernel
    return LayerPlan(layer.name, [layer.name], "dwconv", in_shape, (c,) + out_hw,
                     (kh, kw), tuple(layer.stride), tuple(layer.pads),
                     macs=c * out_hw[0] * out_hw[1] * kh * kw, avg=int(n[0]))


def _conv_kind(layer: Conv2d) -> str:
    """``dwconv`` for a depthwise convolution (groups = input = output channels), which the
    engine runs reading only each group's own input words; ``conv`` otherwise (a grouped
    convolution runs as the dense one with zero weights across groups)."""
    c, m = layer.weight.shape[1] * layer.groups, layer.weight.shape[0]
    return "dwconv" if layer.groups > 1 and layer.groups == c == m else "conv"


def _pool_problems(layer: MaxPool2d, g: LayerPlan) -> list[str]:
    """Why a MaxPool cannot join group ``g`` (empty: it can)."""
    k, s = tuple(layer.kernel), tuple(layer.stride)
    why = []
    if g.kind not in ("conv", "dwconv") or g.pool_hw != (1, 1) or g.add is not None:
        why.append("not directly after a Conv layer (with optional ReLU / Clip)")
    if k != s:
        why.append(f"kernel {k} stride {s} (only stride = kernel)")
    if any(layer.pads):
        why.append(f"padding {tuple(layer.pads)}")
    if g.kind != "linear" and layer.ceil_mode and (g.out_shape[1] % k[0] or g.out_shape[2] % k[1]):
        why.append("ceil_mode with a partial window")
    return why


def _slope_problems(g: LayerPlan) -> str:
    """Why a LeakyReLU cannot join group ``g`` (empty: it can)."""
    if g.slope is not None:
        return f"a second LeakyReLU in the group of {g.name} (one slope stage per group)"
    if g.add is not None:
        return (f"after the residual Add fused into the group of {g.name} (the slope stage "
                f"is in the requantizer before the Add)")
    return ""


def _fuse_add(layer: Add, groups: list[LayerPlan | None], plans: list[LayerPlan],
              owner: dict[str, LayerPlan], problems: list[str]) -> LayerPlan | None:
    """The group a residual Add fuses into: one whose latest tensor is an input that nothing
    else reads, with no pooling and no Add yet, and computed after the other input (so the
    shortcut is in memory while the group runs). The later such group wins."""
    order = {id(p): i for i, p in enumerate(plans)}
    best = None
    for g, other in zip(groups, reversed(layer.inputs)):
        if g is None or g.add is not None or g.pool_hw != (1, 1):
            continue
        src = owner.get(other)
        if src is g or (src is not None and order[id(src)] > order[id(g)]):
            continue
        if best is None or order[id(g)] > order[id(best)]:
            best = g
    if best is None:
        problems.append(f"{layer.name} (Add): the engine fuses an Add into the Conv/Linear "
                        f"group producing one input (that input read by nothing else, no "
                        f"pooling in the group) after the other input is computed; "
                        f"{list(layer.inputs)} have no such group")
    return best


def loop_counts(p: LayerPlan, cfg: EngineConfig) -> dict[str, int]:
    """The loop counts of group ``p`` on ``cfg``: what the sequencer walks and the cycle
    model counts (no quantization or memory layout needed). A window group (``p.window``)
    walks its input map once per group, one item per pixel (:func:`window_extent`)."""
    m_out, ph, pw = p.out_shape
    t_out = _ceil_div(p.map_shape[0], cfg.lanes)    # words per pixel of the map it writes
    if p.window:
        hp, wp = window_extent(p)
        return {"t_in": 1, "t_out": t_out,
                "n_mg": _ceil_div(m_out, cfg.tm), "n_py": hp, "n_px": wp, "pool": 1,
                "kh": 1, "kw": 1, "gap": 0}
    return {"t_in": input_words(p, cfg), "t_out": t_out,
            "n_mg": _ceil_div(m_out, cfg.tm), "n_py": ph, "n_px": pw, "pool": p.pool,
            "kh": p.kernel[0], "kw": p.kernel[1],
            "gap": max(0, cfg.wb_words - window_items(p, cfg))}


def address_steps(p: LayerPlan, t_px: int) -> dict[str, int]:
    """The map words group ``p``'s loop levels step its address by when the level's view
    coordinate is even (``st_py``, ``st_px``, ``st_dy``, ``st_dx``, ``st_ky``, ``st_kx0``) and
    when it is odd (``st_py1`` .. ``st_ky1``; kx's is always ``t_px``), for ``t_px`` words a
    pixel. A level whose coordinate ``v`` steps by ``cs`` on an axis the group reads through a
    Resize view of factor ``f = 2`` (``p.resize``) moves ``floor((v % 2 + cs) / 2)`` stored
    rows or columns (``(v + cs) // 2 - v // 2``); on an axis read as stored (``f = 1``), ``cs``
    of them, whatever the parity."""
    (fy, fx), (sy, sx), (ph, pw) = p.resize, p.stride, p.pool_hw
    row, col = p.stored_shape[2] * t_px, t_px
    steps = {}
    for level, cs, f, unit in (("py", ph * sy, fy, row), ("px", pw * sx, fx, col),
                               ("dy", sy, fy, row), ("dx", sx, fx, col), ("ky", 1, fy, row),
                               ("kx", 1, fx, col)):
        for odd, suffix in ((0, ""), (1, "1")):
            steps[f"st_{level}{suffix}"] = (cs + odd * (f - 1)) // f * unit
    steps["st_kx0"] = steps.pop("st_kx")
    del steps["st_kx1"]                     # one stored pixel further: t_px
    return steps


def window_extent(p: LayerPlan) -> tuple[int, int]:
    """Rows and columns of the input map a window group walks: exactly those its output
    pixels' windows cover, ``(H' - 1) * sy + K`` by ``(W' - 1) * sx + K``, less the top and
    left padding (the window supplies those, ``hw/dw_window.py``); the bottom and right
    padding are walked (items reading the padding value)."""
    (kh, kw), (sy, sx) = p.kernel, p.stride
    oh, ow = p.conv_out
    return (oh - 1) * sy + kh - p.pads[0], (ow - 1) * sx + kw - p.pads[1]


def window_side(plans: list[LayerPlan], cfg: EngineConfig) -> int:
    """The window side K the engine gets for ``plans``: ``cfg.dw_window`` if set, else the
    kernel side of the most multiply-accumulates among the depthwise groups the window can
    take (:func:`_takes_window`); 0 on an engine that does not admit the window
    (:meth:`EngineConfig.window_fits`) or when no group can use it."""
    if not cfg.window_fits():
        return 0
    if cfg.dw_window:
        return cfg.dw_window
    macs: dict[int, int] = {}
    for p in plans:
        if _takes_window(p, cfg, p.kernel[0]):
            macs[p.kernel[0]] = macs.get(p.kernel[0], 0) + p.macs
    return max(macs, key=lambda k: (macs[k], -k), default=0)


def _takes_window(p: LayerPlan, cfg: EngineConfig, k: int) -> bool:
    """Whether the K x K window runs group ``p``: a square K x K depthwise group without
    pooling, a residual Add or a Resize view (the window walks the stored map),
    ``K * K`` at most the lanes, the rows it walks at least 2
    (a line-buffer column is read again only a row later) and at most ``cfg.dw_line``
    when that is set."""
    if not (p.kind == "dwconv" and p.kernel == (k, k) and 2 <= k and k * k <= cfg.lanes
            and p.pool_hw == (1, 1) and p.add is None and p.resize == (1, 1)):
        return False
    cols = window_extent(p)[1]
    return cols >= 2 and (not cfg.dw_line or cols <= cfg.dw_line)


def mark_windows(plans: list[LayerPlan], cfg: EngineConfig) -> int:
    """Set ``window`` on every group the window datapath runs (:func:`window_side`);
    returns the side K (0: none)."""
    k = window_side(plans, cfg)
    for p in plans:
        p.window = k if k and _takes_window(p, cfg, k) else 0
    return k


def input_words(p: LayerPlan, cfg: EngineConfig) -> int:
    """Input words group ``p`` reads per tap pixel (``t_in``): all of the pixel's, or a
    depthwise group's own ``cfg.dw_words``."""
    return cfg.dw_words if p.kind == "dwconv" else _ceil_div(p.in_shape[0], cfg.lanes)


def window_items(p: LayerPlan, cfg: EngineConfig) -> int:
    """Items the sequencer issues per pooling window, i.e. per result: the window's conv
    pixels x kernel taps x input words, plus a residual group's shortcut slots; one for a
    window group (one input pixel per item)."""
    if p.window:
        return 1
    ph, pw = p.pool_hw
    return ph * pw * p.kernel[0] * p.kernel[1] * input_words(p, cfg) + slots(p, cfg)


def slots(p: LayerPlan, cfg: EngineConfig) -> int:
    """Shortcut slot items per output pixel: ``cfg.sc_slots`` for a group with an Add."""
    return cfg.sc_slots if p.add is not None else 0


def plan_model(model: Model, cfg: EngineConfig) -> list[LayerPlan]:
    """Shape-only compile for analysis: the groups with their loop counts as ``entry``
    (enough for :func:`dynfix.hw.cycle_model.layer_cycles`), the first conv turned into a
    1x1 conv over its windows when ``cfg.im2col`` asks and that pays; no weights are packed,
    so a model as large as VGG16 plans instantly. ``cfg``'s parallelism is not checked."""
    plans, _ = plan_groups(model)
    spread_concats(plans, cfg.lanes)
    if cfg.im2col and _reads_once(plans):
        im2col_first(plans[0], cfg.lanes)
    mark_windows(plans, cfg)
    for p in plans:
        p.entry = loop_counts(p, cfg)
    return plans


def im2col_first(plan: LayerPlan, lanes: int) -> tuple | None:
    """Turn the first conv into a 1x1 conv over its windows, streamed by the host, when that
    takes fewer cycles per pixel (a layer with few input channels fills only C of the lanes;
    its C*kh*kw window values fill them all). Returns the original geometry, or None."""
    c, h, w = plan.in_shape
    kh, kw = plan.kernel
    if plan.kind != "conv" or _ceil_div(c * kh * kw, lanes) >= kh * kw * _ceil_div(c, lanes):
        return None
    window = (plan.in_shape, plan.kernel, plan.stride, plan.pads)
    oh, ow = plan.conv_out
    plan.in_shape = (c * kh * kw, oh, ow)
    if plan.weights is not None:            # None in the shape-only plan
        m = plan.weights.shape[0]
        plan.weights = plan.weights.transpose(0, 2, 3, 1).reshape(m, c * kh * kw, 1, 1)
    plan.kernel, plan.stride, plan.pads = (1, 1), (1, 1), (0, 0, 0, 0)
    return window


def _reads_once(plans: list[LayerPlan]) -> bool:
    """Whether only the first group reads the model input (``im2col`` replaces the stored
    input by the first conv's windows, so no other group may read it)."""
    first = plans[0].input
    return sum((p.input == first) + (p.shortcut == first) for p in plans) == 1
