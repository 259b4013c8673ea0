"""The board top's protocol engine: serial bytes in and out, an inference engine beside."""

from __future__ import annotations

from amaranth import Cat, Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.protocol import (CMD_INFER, CMD_INFO, REPLY_RESULT, REPLY_UNKNOWN,
                                    LinkInfo)

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """Runs the serial protocol of :mod:`dynfix.boards.protocol` for one engine.

    On ``I`` it pulses ``start``, assembles ``n_in`` values from the following bytes and passes
    them on ``img``; it answers ``R``, forwards each logit from ``logits`` as it comes (keeping
    the running argmax, ties to the lower index), then sends the class and, once the engine has
    signalled ``done``, its ``cycles``.

    Parameters
    ----------
    info : LinkInfo
        Value counts and widths (what the ``P`` command reports).

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        Bytes to the host.
    img : Out(stream.Signature(signed(info.in_bits)))
        Input values to the engine.
    logits : In(stream.Signature(signed(info.out_bits)))
        Output values from the engine.
    start : Out(1)
        One-cycle pulse before the first input value.
    done : In(1)
        The engine finished (a pulse or a level).
    cycles : In(32)
        The engine's cycle count, read after ``done``.
    busy : Out(1)
        A command is being served.
    """

    def __init__(self, info: LinkInfo):
        if not 1 <= info.n_out <= 256:
            raise ValueError(f"n_out must be 1..256 (the class is one byte), got {info.n_out}")
        self._info = info
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "img": Out(stream.Signature(signed(info.in_bits))),
            "logits": In(stream.Signature(signed(info.out_bits))),
            "start": Out(1),
            "done": In(1),
            "cycles": In(32),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        info = self._info
        in_bytes, out_bytes = info.in_bytes, info.out_bytes

        count = Signal(range(max(info.n_in, info.n_out, len(info.info_reply())) + 1))
        nbytes = Signal(range(max(in_bytes, out_bytes, 4) + 1))
        word = Signal(32)                                   # bytes to send, LSB first
        value = Signal(8 * in_bytes)                        # input value being assembled
        best = Signal(signed(info.out_bits))
        best_idx = Signal(8)
        done_seen = Signal()

        # ``done`` may be a pulse or a level held until the next start: only a ``done`` seen
        # after the last input value (from HEADER on) counts for this run.
        clear_done = Signal()
        with m.If(clear_done):
            m.d.sync += done_seen.eq(0)
        with m.Elif(self.done):
            m.d.sync += done_seen.eq(1)

        m.d.comb += self.tx.payload.eq(word[:8])
        reply = info.info_reply()

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += count.eq(0)
                    with m.If(self.rx.payload == CMD_INFER):
                        m.next = "START"
                    with m.Elif(self.rx.payload == CMD_INFO):
                        m.d.sync += word.eq(reply[0])
                        m.next = "INFO"
                    with m.Else():
                        m.d.sync += word.eq(REPLY_UNKNOWN)
                        m.next = "UNKNOWN"
            with m.State("UNKNOWN"):
                m.d.comb += self.tx.valid.eq(1)
                with m.If(self.tx.ready):
                    m.next = "IDLE"
            with m.State("INFO"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.Switch(count):
                        for i, b in enumerate(reply[1:]):
                            with m.Case(i):
                                m.d.sync += word.eq(b)
                    with m.If(count == len(reply) - 1):
                        m.next = "IDLE"
            with m.State("START"):
                m.d.comb += [self.busy.eq(1), self.start.eq(1)]
                m.d.sync += nbytes.eq(0)
                m.next = "RX_VALUE"
            with m.State("RX_VALUE"):
                m.d.comb += [self.busy.eq(1), self.rx.ready.eq(1)]
                with m.If(self.rx.valid):
                    m.d.sync += [value.eq(Cat(value[8:], self.rx.payload)),
                                 nbytes.eq(nbytes + 1)]
                    with m.If(nbytes == in_bytes - 1):
                        m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += [self.busy.eq(1), self.img.valid.eq(1),
                             self.img.payload.eq(value[:info.in_bits])]
                with m.If(self.img.ready):
                    m.d.sync += [count.eq(count + 1), nbytes.eq(0)]
                    with m.If(count == info.n_in - 1):
                        m.d.sync += [word.eq(REPLY_RESULT), count.eq(0)]
                        m.next = "HEADER"
                    with m.Else():
                        m.next = "RX_VALUE"
            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1), clear_done.eq(1)]
                with m.If(self.tx.ready):
                    m.next = "LOGIT"
            with m.State("LOGIT"):
                m.d.comb += [self.busy.eq(1), self.logits.ready.eq(1)]
                with m.If(self.logits.valid):
                    logit = self.logits.payload
                    m.d.sync += [word.eq(logit), nbytes.eq(out_bytes)]
                    with m.If((count == 0) | (logit > best)):
                        m.d.sync += [best.eq(logit), best_idx.eq(count)]
                    m.next = "LOGIT_TX"
            with m.State("LOGIT_TX"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]
                    with m.If(nbytes == 1):
                        m.d.sync += count.eq(count + 1)
                        with m.If(count == info.n_out - 1):
                            m.d.sync += word.eq(best_idx)
                            m.next = "CLASS"
                        with m.Else():
                            m.next = "LOGIT"
            with m.State("CLASS"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.next = "WAIT_DONE"
            with m.State("WAIT_DONE"):
                m.d.comb += self.busy.eq(1)
                with m.If(done_seen):
                    m.d.sync += [word.eq(self.cycles), nbytes.eq(4)]
                    m.next = "CYCLES"
            with m.State("CYCLES"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += [word.eq(word >> 8), nbytes.eq(nbytes - 1)]
                    with m.If(nbytes == 1):
                        m.next = "IDLE"
        return m
