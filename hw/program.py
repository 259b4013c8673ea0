"""The layer program: one entry per fused layer group (Conv/Linear + ReLU + MaxPool).

Every loop bound and address step the hardware needs is precomputed by the compiler, so the
controller and the sequencer only count and add (no multipliers in the address logic).
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from dynfix.errors import DynfixError
from .config import EngineConfig

#: Field groups by kind; the shapes follow from the config.
COUNT_FIELDS = ("in_c", "in_pix", "in_h", "in_w", "t_in", "n_mg", "n_py", "n_px", "pool",
                "kh", "kw", "cs_py", "cs_px", "cs_dy", "cs_dx", "t_out", "out_pix", "out_c", "gap")
COORD_FIELDS = ("iy0", "ix0")
STEP_FIELDS = ("st_py", "st_px", "st_dy", "st_dx", "st_ky")
ADDR_FIELDS = ("in_base", "out_base")
FLAG_FIELDS = ("relu", "last")


def entry_layout(cfg: EngineConfig) -> data.StructLayout:
    """The program entry of ``cfg`` (all counts in ``dim_bits``, addresses in map words)."""
    ab, db = cfg.fmap_addr_bits, cfg.dim_bits
    fields = {}
    fields.update({name: unsigned(ab) for name in ADDR_FIELDS})
    fields["addr0"] = signed(ab + 2)              # map address of the first window's corner
    fields.update({name: signed(db + 1) for name in COORD_FIELDS})
    fields.update({name: unsigned(db) for name in COUNT_FIELDS})
    fields.update({name: unsigned(ab) for name in STEP_FIELDS})
    fields["w_base"] = unsigned(cfg.weight_addr_bits)
    fields["b_base"] = unsigned(cfg.bias_addr_bits)
    fields["bias_shift"] = unsigned(cfg.bias_shift_bits)
    fields["data_shift"] = signed(cfg.shift_bits)
    fields["out_bits"] = unsigned(cfg.out_bits_bits)
    fields.update({name: unsigned(1) for name in FLAG_FIELDS})
    return data.StructLayout(fields)


def check_entry(cfg: EngineConfig, entry: dict[str, int], where: str) -> None:
    """Raise if a value does not fit its field (a compiler bug or an undersized config)."""
    layout = entry_layout(cfg)
    for name, field in layout:
        v = entry[name]
        shape = field.shape
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
        if not lo <= v <= hi:
            raise DynfixError(f"{where}: program field {name}={v} does not fit {shape}")
    missing = set(entry) ^ {name for name, _ in layout}
    if missing:
        raise DynfixError(f"{where}: program fields differ from the layout: {sorted(missing)}")


def pack_entry(cfg: EngineConfig, entry: dict[str, int]) -> int:
    """One program word as an integer (for memory init and hex images)."""
    return entry_layout(cfg).const(entry).as_value().value
