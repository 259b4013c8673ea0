"""Board descriptions: one YAML file per board, loaded and checked into :class:`Board`.

A board file names the amaranth-boards platform class, the FPGA, the resources the fitter may
spend (LUTs, flip-flops, DSP blocks, block RAM, SPRAM), the clocks, the UART the board top
talks over, the LEDs that show busy/done and the SPI flash that holds the bitstream and the
weights (:class:`FlashSpec`). ``docs/boards.md`` documents the format. Any problem in a file
is one :class:`~dynfix.errors.DynfixError` naming the file and the key.
"""

from __future__ import annotations

import importlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dynfix.errors import DynfixError
from dynfix.hw.fpga_family import FpgaFamily, fpga_family
from dynfix.hw.sdram_axi import SDRAM_PARTS, SdramPart

BOARDS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DspSpec:
    """Hard multiplier blocks: ``blocks`` of them, each an ``a_bits`` x ``b_bits`` multiply."""

    kind: str
    blocks: int
    a_bits: int
    b_bits: int
    signed: bool = True


@dataclass(frozen=True)
class RamSpec:
    """Block or single-port RAM: ``blocks`` blocks of ``bits`` bits, in the (depth, width,
    enable) shapes one block can take: ``enable`` bits share a write enable (a board file
    may leave it out: 1, bit-granular writes)."""

    kind: str
    blocks: int
    bits: int
    shapes: tuple[tuple[int, int, int], ...]

    @property
    def total_bits(self) -> int:
        return self.blocks * self.bits


@dataclass(frozen=True)
class SdramSpec:
    """An SDR SDRAM chip on the board: its part (``hw/sdram_axi.py``, ``SDRAM_PARTS``) and
    the platform resource its pins are."""

    part: SdramPart
    resource: str = "sdram"

    @property
    def bytes(self) -> int:
        return 2 * self.part.words


#: What a flash programming command may name (:class:`FlashSpec`): the file, the weight
#: image's offset in bytes (an int: ``{offset:#x}`` is ``0x400000``) and in whole MiB.
PROGRAM_FIELDS = ("file", "offset", "offset_mib")
#: The largest flash a board file may declare: the flash reader sends 24-bit addresses.
MAX_FLASH_BYTES = 1 << 24
#: The image's offset must start an erase sector (4 KiB on SPI NOR flash), so programming it
#: never erases the end of the bitstream.
FLASH_SECTOR_BYTES = 4096


def format_command(template: str, file: str, offset: int) -> str:
    """``template`` (a :class:`FlashSpec` command) for the file ``file`` and the image offset
    ``offset``. Raises ``ValueError`` (one line) for a placeholder other than
    :data:`PROGRAM_FIELDS`, a template that does not name ``{file}``, ``{offset_mib}`` with
    an offset of no whole MiB, or a malformed template."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template)
                 if name is not None]
    except ValueError as e:
        raise ValueError(f"{template!r}: {e}") from None
    for name in names:
        if name not in PROGRAM_FIELDS:
            known = ", ".join(f"{{{f}}}" for f in PROGRAM_FIELDS)
            raise ValueError(f"{template!r}: unknown placeholder {{{name}}} (known: {known})")
    if "file" not in names:
        raise ValueError(f"{template!r} does not name the file ({{file}})")
    if "offset_mib" in names and offset % (1 << 20):
        raise ValueError(f"{template!r}: {{offset_mib}} needs an offset of whole MiB, not "
                         f"{offset:#x}")
    try:
        return template.format(file=file, offset=offset, offset_mib=offset >> 20)
    except (ValueError, TypeError, KeyError, IndexError) as e:     # e.g. "{offset:{x}}"
        raise ValueError(f"{template!r}: {e!r}") from None


@dataclass(frozen=True)
class FlashSpec:
    """The board's SPI NOR flash: it holds the bitstream at 0 and, at ``offset``, the weights'
    image (``boards/flash_image.py``) that the board top reads after configuration.

    ``resource`` is the platform resource of its pins in single-bit SPI mode (CS, COPI, CIPO,
    WP, HOLD and, unless ``usrmclk``, the clock), ``quad_resource`` the one with all four IO
    lines (None when the platform has none: no weights read from the flash at run time).
    With ``usrmclk`` (ECP5) the flash clock is the configuration clock pin, which the design
    reaches only through the ``USRMCLK`` primitive. ``program`` are the commands that write
    the image (the first is the one ``dynfix synth`` records, the others alternatives),
    ``program_bitstream`` the one that writes the bitstream; both are templates of
    :data:`PROGRAM_FIELDS` (:func:`format_command`)."""

    resource: str
    quad_resource: str | None
    bytes: int
    offset: int
    usrmclk: bool
    program: tuple[str, ...]
    program_bitstream: str

    def program_commands(self, file: str) -> list[str]:
        """The commands that write the image file ``file`` at :attr:`offset`."""
        return [format_command(t, file, self.offset) for t in self.program]

    def bitstream_command(self, file: str) -> str:
        """The command that writes the bitstream file ``file`` (at 0)."""
        return format_command(self.program_bitstream, file, self.offset)


#: nextpnr's default router, which a build plan leaves unnamed.
DEFAULT_ROUTER = "router1"
#: The routers nextpnr offers (``--router``).
ROUTERS = (DEFAULT_ROUTER, "router2")


@dataclass(frozen=True)
class LedSpec:
    resource: str
    number: int = 0
    subsignal: str | None = None


@dataclass(frozen=True)
class Board:
    """One board, as read from ``boards/<name>.yaml``."""

    name: str
    description: str
    platform: str
    family: FpgaFamily          # from ``fpga.family``
    device: str
    package: str
    luts: int
    ffs: int
    dsp: DspSpec
    bram: RamSpec
    spram: RamSpec | None
    clock_resource: str
    clock_mhz: float
    target_mhz: float
    #: The highest clock ``dynfix synth`` tries (its timing closure's first build), MHz.
    max_mhz: float
    uart_resource: str
    uart_number: int
    baud: int
    uart_add: dict[str, Any] | None = None
    sdram: SdramSpec | None = None
    #: The SPI flash the weights load from (None: the board file has no ``flash`` section,
    #: so no engine on it loads its weights from flash).
    flash: FlashSpec | None = None
    leds: dict[str, LedSpec] = field(default_factory=dict)
    synth_opts: str = ""
    seed: int = 1
    #: nextpnr's router (``synth: router``): ``router1``, its default, or ``router2``, which
    #: routes congested placements that router1 does not finish (docs/boards.md, "Routing").
    router: str = DEFAULT_ROUTER
    env: dict[str, str] = field(default_factory=dict)
    speed: str | None = None
    default: bool = False
    path: Path | None = None

    @property
    def bundled_name(self) -> str | None:
        """The name that finds this board again if it was read from ``boards/`` (what a
        report can record), else ``None`` (a user's file: no path goes into reports)."""
        bundled = self.path is not None and self.path.parent == BOARDS_DIR
        return self.name if bundled else None

    def platform_class(self) -> type:
        """Import the amaranth-boards platform class named in the file."""
        module, _, cls = self.platform.rpartition(".")
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as e:
            raise DynfixError(f"board {self.name}: cannot import platform {self.platform!r} "
                              f"({e})") from None

    def make_platform(self):
        """A platform instance with the board's UART resource present."""
        plat = self.platform_class()()
        if self.uart_add is not None:
            # Deferred: amaranth-boards loads amaranth.build (a tenth of a second) and only
            # builds need a platform; `dynfix boards` and the fit read board files alone.
            from amaranth.build import Attrs
            from amaranth_boards.resources import UARTResource
            add = dict(self.uart_add)
            conn = tuple(add.pop("conn")) if "conn" in add else None
            attrs = Attrs(**add.pop("attrs", {}))
            plat.add_resources([UARTResource(self.uart_number, conn=conn, attrs=attrs, **add)])
        return plat

    def summary(self) -> dict[str, Any]:
        """The board as plain data (for ``dynfix boards --json``)."""
        return {
            "name": self.name, "description": self.description, "platform": self.platform,
            "family": self.family.name, "device": self.device, "package": self.package,
            "luts": self.luts, "ffs": self.ffs,
            "dsp": {"kind": self.dsp.kind, "blocks": self.dsp.blocks,
                    "a_bits": self.dsp.a_bits, "b_bits": self.dsp.b_bits},
            "bram": {"kind": self.bram.kind, "blocks": self.bram.blocks,
                     "bits": self.bram.bits, "total_bits": self.bram.total_bits},
            "spram": None if self.spram is None else {
                "kind": self.spram.kind, "blocks": self.spram.blocks,
                "bits": self.spram.bits, "total_bits": self.spram.total_bits},
            "sdram": None if self.sdram is None else {
                "part": self.sdram.part.name, "bytes": self.sdram.bytes},
            "flash": None if self.flash is None else {
                "bytes": self.flash.bytes, "offset": self.flash.offset,
                "resource": self.flash.resource, "quad_resource": self.flash.quad_resource,
                "usrmclk": self.flash.usrmclk},
            "clock_mhz": self.clock_mhz, "target_mhz": self.target_mhz,
            "max_mhz": self.max_mhz,
            "uart": f"{self.uart_resource}#{self.uart_number}", "baud": self.baud,
            "default": self.default,
        }


class _Reader:
    """Typed access to a parsed YAML mapping with error messages naming file and key."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, msg: str) -> DynfixError:
        return DynfixError(f"board file {self.where}: {key}: {msg}")

    def get(self, d: dict, key: str, typ: type | tuple, prefix: str = "",
            default: Any = ..., positive: bool = False) -> Any:
        full = f"{prefix}{key}"
        if not isinstance(d, dict):
            raise self.fail(prefix.rstrip("."), "expected a mapping")
        if key not in d or d[key] is None:
            if default is ...:
                raise self.fail(full, "missing")
            return default
        v = d[key]
        wants_bool = typ is bool or (isinstance(typ, tuple) and bool in typ)
        if (isinstance(v, bool) and not wants_bool) or not isinstance(v, typ):
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise self.fail(full, f"expected {names}, got {v!r}")
        if positive and not v > 0:
            raise self.fail(full, f"must be positive, got {v!r}")
        return v

    def ram(self, d: dict, prefix: str) -> RamSpec:
        shapes = self.get(d, "shapes", list, prefix)
        try:
            shapes_t = tuple((int(s[0]), int(s[1]), int(s[2]) if len(s) == 3 else 1)
                             for s in shapes if len(s) in (2, 3))
        except (TypeError, ValueError, KeyError):
            shapes_t = ()
        if len(shapes_t) != len(shapes) or not shapes_t:
            raise self.fail(f"{prefix}shapes", "expected a list of [depth, width] or "
                            "[depth, width, bits per write enable] entries")
        bits = self.get(d, "bits", int, prefix, positive=True)
        for dp, w, e in shapes_t:
            if dp <= 0 or w <= 0 or dp * w > bits:
                raise self.fail(f"{prefix}shapes", f"{dp} x {w} does not fit {bits} bits")
            if not 0 < e <= w:
                raise self.fail(f"{prefix}shapes", f"{dp} x {w}: bits per write enable "
                                f"must be 1 to {w}, got {e}")
        return RamSpec(kind=self.get(d, "kind", str, prefix),
                       blocks=self.get(d, "blocks", int, prefix, positive=True),
                       bits=bits, shapes=shapes_t)

    def flash(self, d: dict, prefix: str = "flash.") -> FlashSpec:
        """The ``flash`` section: sizes within the reader's 24-bit addresses, the image's
        offset on a sector boundary inside the flash, the commands well-formed."""
        known = {"resource", "quad_resource", "bytes", "offset", "usrmclk", "program",
                 "program_bitstream"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise self.fail(f"{prefix}{unknown[0]}",
                            f"unknown key (known: {', '.join(sorted(known))})")
        size = self.get(d, "bytes", int, prefix, positive=True)
        if size > MAX_FLASH_BYTES:
            raise self.fail(f"{prefix}bytes", f"at most {MAX_FLASH_BYTES} (16 MiB: the flash "
                                              f"reader sends 24-bit addresses), got {size}")
        offset = self.get(d, "offset", int, prefix, positive=True)
        if offset % FLASH_SECTOR_BYTES:
            raise self.fail(f"{prefix}offset", f"must be a multiple of 4 KiB (an erase "
                                               f"sector), got {offset:#x}")
        if offset >= size:
            raise self.fail(f"{prefix}offset", f"{offset:#x} is past the end of the "
                                               f"{size:#x}-byte flash")
        program = self.get(d, "program", list, prefix)
        if not program or not all(isinstance(t, str) for t in program):
            raise self.fail(f"{prefix}program", "expected a list of command templates")
        spec = FlashSpec(
            resource=self.get(d, "resource", str, prefix),
            quad_resource=self.get(d, "quad_resource", str, prefix, default=None),
            bytes=size, offset=offset,
            usrmclk=self.get(d, "usrmclk", bool, prefix, default=False),
            program=tuple(program),
            program_bitstream=self.get(d, "program_bitstream", str, prefix))
        for key, check in (("program", lambda: spec.program_commands("f")),
                           ("program_bitstream", lambda: spec.bitstream_command("f"))):
            try:
                check()
            except ValueError as e:
                raise self.fail(f"{prefix}{key}", str(e)) from None
        return spec


def router_refusal(name: object) -> str | None:
    """Why ``name`` is not one of nextpnr's :data:`ROUTERS`, or None when it is."""
    if name in ROUTERS:
        return None
    return f"must be one of {', '.join(ROUTERS)}, not {name!r}"


def check_router(router: str | None) -> None:
    """Refuse a ``router`` option (API, CLI) that is not one of :data:`ROUTERS`; None (the
    board file's router) passes."""
    why = None if router is None else router_refusal(router)
    if why:
        raise DynfixError(f"{{router}} {why}", ("router",))


def parse_board(data: Any, where: str, path: Path | None = None) -> Board:
    """Check a parsed board file and build the :class:`Board`."""
    r = _Reader(where)
    if not isinstance(data, dict):
        raise DynfixError(f"board file {where}: expected a mapping at the top level")
    known = {"name", "description", "default", "platform", "fpga", "resources", "clock",
             "uart", "leds", "synth", "env", "flash"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise r.fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    fpga = r.get(data, "fpga", dict)
    family_name = r.get(fpga, "family", str, "fpga.")
    try:
        family = fpga_family(family_name)
    except DynfixError as e:
        raise r.fail("fpga.family", str(e)) from None
    res = r.get(data, "resources", dict)
    dsp = r.get(res, "dsp", dict, "resources.")
    clock = r.get(data, "clock", dict)
    uart = r.get(data, "uart", dict)
    uart_add = r.get(uart, "add", dict, "uart.", default=None)
    if uart_add is not None and not {"rx", "tx"} <= set(uart_add):
        raise r.fail("uart.add", "needs rx and tx pins")
    leds = {}
    for role, spec in r.get(data, "leds", dict, default={}).items():
        leds[role] = LedSpec(resource=r.get(spec, "resource", str, f"leds.{role}."),
                             number=r.get(spec, "number", int, f"leds.{role}.", default=0),
                             subsignal=r.get(spec, "subsignal", str, f"leds.{role}.",
                                             default=None))
    synth = r.get(data, "synth", dict, default={})
    env = r.get(data, "env", dict, default={})
    spram = r.get(res, "spram", dict, "resources.", default=None)
    sdram = r.get(res, "sdram", dict, "resources.", default=None)
    if sdram is not None:
        part = r.get(sdram, "part", str, "resources.sdram.")
        if part not in SDRAM_PARTS:
            raise r.fail("resources.sdram.part", f"unknown SDRAM part {part!r} (known: "
                                                 f"{', '.join(sorted(SDRAM_PARTS))})")
        sdram = SdramSpec(SDRAM_PARTS[part],
                          r.get(sdram, "resource", str, "resources.sdram.", default="sdram"))
    flash = r.get(data, "flash", dict, default=None)
    clock_mhz = float(r.get(clock, "mhz", (int, float), "clock.", positive=True))
    platform = r.get(data, "platform", str)
    if "." not in platform:
        raise r.fail("platform", f"expected module.Class, got {platform!r}")
    speed = r.get(fpga, "speed", (int, str), "fpga.", default=None)
    router = r.get(synth, "router", str, "synth.", default=DEFAULT_ROUTER)
    why = router_refusal(router)
    if why:
        raise r.fail("synth.router", why)
    return Board(
        name=r.get(data, "name", str),
        description=r.get(data, "description", str, default=""),
        platform=platform,
        family=family,
        device=r.get(fpga, "device", str, "fpga."),
        package=r.get(fpga, "package", str, "fpga."),
        speed=None if speed is None else str(speed),
        luts=r.get(res, "luts", int, "resources.", positive=True),
        ffs=r.get(res, "ffs", int, "resources.", positive=True),
        dsp=DspSpec(kind=r.get(dsp, "kind", str, "resources.dsp."),
                    blocks=r.get(dsp, "blocks", int, "resources.dsp.", default=0),
                    a_bits=r.get(dsp, "a_bits", int, "resources.dsp.", positive=True),
                    b_bits=r.get(dsp, "b_bits", int, "resources.dsp.", positive=True),
                    signed=r.get(dsp, "signed", bool, "resources.dsp.", default=True)),
        bram=r.ram(r.get(res, "bram", dict, "resources."), "resources.bram."),
        spram=None if spram is None else r.ram(spram, "resources.spram."),
        clock_resource=r.get(clock, "resource", str, "clock."),
        clock_mhz=clock_mhz,
        target_mhz=float(r.get(clock, "target_mhz", (int, float), "clock.",
                               default=clock_mhz, positive=True)),
        max_mhz=float(r.get(clock, "max_mhz", (int, float), "clock.",
                            default=family.max_mhz, positive=True)),
        uart_resource=r.get(uart, "resource", str, "uart.", default="uart"),
        uart_number=r.get(uart, "number", int, "uart.", default=0),
        baud=r.get(uart, "baud", int, "uart.", default=115200, positive=True),
        uart_add=uart_add,
        sdram=sdram,
        flash=None if flash is None else r.flash(flash),
        leds=leds,
        synth_opts=r.get(synth, "synth_opts", str, "synth.", default=""),
        seed=r.get(synth, "seed", int, "synth.", default=1),
        router=router,
        env={str(k): str(v) for k, v in env.items()},
        default=r.get(data, "default", bool, default=False),
        path=path,
    )


def load_board_file(path: str | Path) -> Board:
    """Read one board file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DynfixError(f"cannot read board file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise DynfixError(f"board file {path.name}: not valid YAML{at}") from None
    board = parse_board(data, path.name, path)
    if path.parent == BOARDS_DIR and board.name != path.stem:
        raise DynfixError(f"board file {path.name}: name {board.name!r} must match the file "
                          f"name {path.stem!r}")
    return board


def list_boards() -> list[Board]:
    """All bundled boards, default first, then by name."""
    boards = [load_board_file(p) for p in sorted(BOARDS_DIR.glob("*.yaml"))]
    defaults = [b.name for b in boards if b.default]
    if len(defaults) > 1:
        raise DynfixError(f"more than one default board: {', '.join(defaults)}")
    return sorted(boards, key=lambda b: (not b.default, b.name))


def default_board() -> Board:
    boards = list_boards()
    return boards[0]


def get_board(name: str | None) -> Board:
    """A board by name (bundled) or by path to a ``.yaml`` file; ``None``: the default."""
    if name is None:
        return default_board()
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return load_board_file(name)
    path = BOARDS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(b.name for b in list_boards())
        raise DynfixError(f"unknown board {name!r}; known boards: {names} "
                          f"(or pass a board .yaml file)")
    return load_board_file(path)
