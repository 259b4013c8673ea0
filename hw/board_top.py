"""The board top: an inference engine behind a UART link, LEDs for busy and done."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.protocol import LinkInfo
from dynfix.hw.host_link import HostLink
from dynfix.hw.uart_rx import UARTRx
from dynfix.hw.uart_tx import UARTTx

__all__ = ["BoardTop"]


class BoardTop(wiring.Component):
    """Engine + :class:`HostLink` + UART receiver and transmitter.

    Built for a platform, the serial lines and LEDs go to the pins the board file names;
    without one (simulation) they are the component's ports.

    Parameters
    ----------
    engine : wiring.Component
        Has ``i`` (input values), ``o`` (logits), ``start``, ``done`` and ``cycles`` as in
        :mod:`dynfix.hw.engine`.
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
        for name, bits in (("i", info.in_bits), ("o", info.out_bits)):
            width = engine.signature.members[name].signature.members["payload"].shape.width
            if width != bits:
                self._MustUse__silence = True          # not built: do not warn about it
                raise ValueError(f"engine.{name} carries {width}-bit values, the link "
                                 f"{bits}-bit ones")
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
