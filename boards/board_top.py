"""The board top: an inference engine behind a UART link, LEDs for busy and done."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.host_link import HostLink
from dynfix.boards.protocol import LinkInfo
from dynfix.boards.uart_rx import UARTRx
from dynfix.boards.uart_tx import UARTTx
from dynfix.hw.host_interface import EngineHostSignature

__all__ = ["BoardTop", "check_link"]


def check_link(engine: wiring.Signature, info: LinkInfo) -> None:
    """Raise unless an engine with the host interface ``engine`` carries the values the link
    ``info`` announces.

    It needs only the signature, so callers can check before they build anything (an
    elaboratable that is built and then dropped draws Amaranth's UnusedElaboratable warning).

    Raises
    ------
    TypeError
        ``engine`` is not an :class:`~dynfix.hw.host_interface.EngineHostSignature`.
    ValueError
        Its value width differs from the link's input or output width.
    """
    if not isinstance(engine, EngineHostSignature):
        raise TypeError(f"the engine's signature must be an EngineHostSignature, not {engine!r}")
    for name, bits in (("i", info.in_bits), ("o", info.out_bits)):
        if engine.data_bits != bits:
            raise ValueError(f"engine.{name} carries {engine.data_bits}-bit values, the link "
                             f"{bits}-bit ones")


class BoardTop(wiring.Component):
    """Engine + :class:`HostLink` + UART receiver and transmitter.

    Built for a platform, the serial lines and LEDs go to the pins the board file names;
    without one (simulation) they are the component's ports.

    Parameters
    ----------
    engine : wiring.Component
        With an :class:`~dynfix.hw.host_interface.EngineHostSignature` whose ``data_bits``
        are the link's value widths (:func:`check_link`, which this constructor calls too).
    info : LinkInfo
        Input/output counts and widths of the loaded program.
    divisor : int
        Clock cycles per UART bit.
    board : Board or None
        Names the UART and LED resources when built for a platform.

    Members
    -------
    uart_rx : In(1)
    uart_tx : Out(1)
    led_busy : Out(1)
        An inference is running.
    led_done : Out(1)
        The last inference finished (cleared by the next start).
    """

    def __init__(self, engine: wiring.Component, info: LinkInfo, *, divisor: int, board=None):
        check_link(engine.signature, info)
        self._engine = engine
        self._info = info
        self._divisor = divisor
        self._board = board
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "led_busy": Out(1),
            "led_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        m.submodules.link = link = HostLink(self._info)
        m.submodules.uart_rx = rx = UARTRx(divisor=self._divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor=self._divisor)

        wiring.connect(m, rx.o, link.rx)
        wiring.connect(m, link.tx, tx.i)
        wiring.connect(m, link.img, engine.i)
        wiring.connect(m, engine.o, link.logits)
        m.d.comb += [
            engine.start.eq(link.start),
            link.done.eq(engine.done),
            link.cycles.eq(engine.cycles),
            rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(tx.tx),
            self.led_busy.eq(link.busy),
        ]
        with m.If(link.start):
            m.d.sync += self.led_done.eq(0)
        with m.Elif(engine.done):
            m.d.sync += self.led_done.eq(1)

        if platform is not None and self._board is not None:
            self._pins(m, platform)
        return m

    def _pins(self, m: Module, platform) -> None:
        b = self._board
        uart = platform.request(b.uart_resource, b.uart_number, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [self.uart_rx.eq(rx_buf.i), tx_buf.o.eq(self.uart_tx)]
        requested = {}
        for role, signal in (("busy", self.led_busy), ("done", self.led_done)):
            led = b.leds.get(role)
            if led is None:
                continue
            key = (led.resource, led.number)
            if key not in requested:
                requested[key] = platform.request(led.resource, led.number, dir="-")
            port = requested[key]
            if led.subsignal is not None:
                port = getattr(port, led.subsignal)
            buf = io.Buffer("o", port)
            m.submodules[f"led_{role}_buf"] = buf
            m.d.comb += buf.o.eq(signal)
