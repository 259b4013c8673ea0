"""Every pipeline latency of the engine, in one place.

The engine is one pipeline: an item issued by the sequencer reaches the MAC array
:func:`issue_to_mac` cycles later, its output pixel's sum leaves the array after
:func:`mac_latency`, the requantizer, the residual add and the max pool follow, and the
write-back writes the result. Each component registers exactly the stages named here and
checks it when built (its ``latency`` attribute is read from here); the engine delays its
strobes by these; the compiler, the cycle model and the resource estimate read them here
rather than from the engine top.
"""

from __future__ import annotations

from .config import BulkStore, EngineConfig

#: Cycles from an item's issue to the MAC array's input: the map read, the map register
#: (zeroed in the padding).
ISSUE_TO_MAC = 2
#: The depthwise window (hw/dw_window.py), in engines with one: the line buffer's read,
#: the window register.
DW_WINDOW = 2
#: Registers on each side of a multiplier: operands (per row), then products. Hard
#: multipliers without their own registers (yosys maps ECP5's MULT18X18D so) sit in DSP
#: columns far from the logic around them, and nextpnr does not place the registers by the
#: block; two each way were the best of the depths measured (docs/boards.md, "Measurements
#: behind the design").
OPERAND_STAGES = 2
PRODUCT_STAGES = 2
#: Cycles from a multiplier's operands to its product, whatever computes it: fabric
#: registers, an SB_MAC16 pair or a MULT18X18D with its own registers on each side
#: (hw/ice40_dual_mac.py, hw/ecp5_mul.py), a product in LUTs (hw/lut_mul.py), or one
#: without a multiplier at weights of at most 2 bits (hw/sign_product.py).
MULTIPLIER = OPERAND_STAGES + PRODUCT_STAGES
#: The codebook lookup (hw/codebook.py), in engines with weight indices (``w_index_bits``):
#: the index word read a cycle earlier, each lane's weight registered after its lookup.
CODEBOOK = 1
#: The requantizer: the shift, the clamp's decision, its select (hw/requantizer.py).
REQUANTIZER = 3
#: The requantizer's slope stage, in engines with a LeakyReLU.
SLOPE = 1
#: The residual add: the aligned sum, then its own requantizer (hw/residual_add.py).
RESIDUAL_ADD = 1 + REQUANTIZER
#: The max pool's register (hw/max_pool.py).
MAX_POOL = 1
#: The bulk memory the cycle model and the simulation wrapper assume for ``w_bulk``: cycles
#: from a burst's address handshake to its first beat (then a beat per cycle).
BULK_LATENCY = 3
#: The quad-SPI flash port (hw/qspi_flash_axi.py): cycles from a read's AR handshake to the
#: flash's first data nibble period (the burst checked, CS high, the command on one line,
#: the address and mode byte on four, the dummy clocks; SCK at half the clock).
FLASH_COMMAND = 45


#: The SDRAM controller (hw/sdram_axi.py): at least this many cycles from an AR handshake to
#: the first 16-bit word out of its read FIFO (the burst taken, READ, CAS latency 2, the
#: capture, the FIFO; more when a row must be opened). Row changes and refreshes inside a
#: pass cost more: with it the cycle model is a lower bound.
SDRAM_LATENCY = 5


def flash_timing(bus_bits: int) -> tuple[int, int]:
    """``(latency, interval)`` of the quad-SPI flash port on a ``bus_bits`` bus: a new
    read's first beat ``latency`` cycles after its AR handshake, each later beat
    ``interval`` cycles after the previous one's handshake (a nibble per two cycles)."""
    interval = bus_bits // 2
    return FLASH_COMMAND + interval, interval


def bulk_timing(cfg: EngineConfig) -> tuple[int, int]:
    """``(latency, interval)`` of the bulk memory of ``cfg`` (``w_bulk``): a new read's first
    beat ``latency`` cycles after its address, each later one ``interval`` cycles after the
    previous one's handshake."""
    if cfg.bulk_store is BulkStore.FLASH:
        return flash_timing(cfg.bus_bits)
    if cfg.bulk_store is BulkStore.SDRAM:
        return SDRAM_LATENCY + cfg.bus_bits // 16 - 1, cfg.bus_bits // 16
    return BULK_LATENCY, 1


def bulk_write_interval(cfg: EngineConfig) -> int:
    """Cycles per beat the bulk memory of ``cfg`` takes writes at: the SDRAM controller
    (``hw/sdram_axi.py``) writes a beat's 16-bit words one a cycle and takes the next beat
    as the last goes out; the other stores one a cycle."""
    if cfg.bulk_store is BulkStore.SDRAM:
        return cfg.bus_bits // 16
    return 1


def tree_levels(n: int) -> int:
    """Adder levels (and register stages) of a balanced tree over ``n`` inputs."""
    return max(0, (n - 1).bit_length())


def mac_latency(lanes: int) -> int:
    """Cycles from the MAC array's inputs to its output: the multipliers, the adder tree
    (one register per level), the accumulator."""
    return MULTIPLIER + tree_levels(lanes) + 1


def issue_to_mac(cfg: EngineConfig) -> int:
    """Cycles from an item's issue to the MAC array's input on ``cfg``."""
    return ISSUE_TO_MAC + (DW_WINDOW if cfg.dw_window else 0)


def weight_read_lag(cfg: EngineConfig) -> int:
    """Cycles from an item's issue to its weight word's read address (the memory answers a
    cycle later): a cycle before the map register's output meets it at the MAC array, and
    one more before that through the codebook lookup (``w_index_bits``)."""
    return issue_to_mac(cfg) - 1 - (CODEBOOK if cfg.w_index_bits else 0)


def requantizer_stages(slope: bool) -> int:
    """Register stages of a requantizer, with or without the slope stage."""
    return REQUANTIZER + (SLOPE if slope else 0)


def requantizer_latency(cfg: EngineConfig) -> int:
    """Register stages of the engine's requantizers (one more with a slope stage)."""
    return requantizer_stages(bool(cfg.slope))


def result_latency(cfg: EngineConfig) -> int:
    """Cycles from an output pixel's last item's issue to its requantized result."""
    return issue_to_mac(cfg) + mac_latency(cfg.lanes) + requantizer_latency(cfg)


def pipeline_depth(cfg: EngineConfig) -> int:
    """Cycles from an item's issue to its result's last write into the map memory."""
    return (result_latency(cfg) + (RESIDUAL_ADD if cfg.residual else 0)
            + MAX_POOL + cfg.wb_words - 1)


def write_delay(cfg: EngineConfig) -> int:
    """Cycles from the issue of a pooling window's last item to the write-back's first write
    of its result (the rest follow, one per cycle, up to ``pipeline_depth``)."""
    return pipeline_depth(cfg) - (cfg.wb_words - 1)


def shortcut_fifo_depth(cfg: EngineConfig, items: int, gap: int) -> int:
    """Shortcut FIFO entries a residual group needs: pixels whose shortcut words are read
    (``sc_slots`` slot items at the start of each pixel's ``items``, one pixel every
    ``items + gap`` cycles) before the oldest one's result reaches the add stage, plus
    one."""
    slots = cfg.sc_slots
    ahead = (items - 1 + result_latency(cfg) - slots) // (items + gap)
    return ahead + 2
