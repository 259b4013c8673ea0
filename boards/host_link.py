"""The board top's protocol engine: serial bytes in and out, an inference engine beside."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.protocol import (CMD_INFER, CMD_INFO, REPLY_RESULT, REPLY_UNKNOWN,
                                    LinkInfo)
from dynfix.hw.controller import OneHot

__all__ = ["HostLink"]


#: The protocol's states: IDLE waits for a command byte; UNKNOWN answers "?"; INFO sends
#: the info reply; START pulses the engine's start; RX_VALUE receives an input value's bytes,
#: PUSH passes it to the engine; HEADER sends "R"; LOGIT waits for the next logit, LOGIT_TX
#: sends its bytes; CLASS sends the class; WAIT_DONE waits for the engine's done; CYCLES
#: sends the cycle count.
_STATES = ("IDLE", "UNKNOWN", "INFO", "START", "RX_VALUE", "PUSH", "HEADER", "LOGIT",
           "LOGIT_TX", "CLASS", "WAIT_DONE", "CYCLES")
#: States that offer a byte on ``tx``.
_TX_STATES = ("UNKNOWN", "INFO", "HEADER", "LOGIT_TX", "CLASS", "CYCLES")


class HostLink(wiring.Component):
    """Runs the serial protocol of :mod:`dynfix.boards.protocol` for one engine.

    On ``I`` it pulses ``start``, assembles ``n_in`` values from the following bytes and passes
    them on ``img``; it answers ``R``, forwards each logit from ``logits`` as it comes (keeping
    the running argmax, ties to the lower index), then sends the class (``info.class_bytes``
    bytes) and, once the engine has signalled ``done``, its ``cycles``.

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
        if not 1 <= info.n_out <= 0xFFFF:
            raise ValueError(f"n_out must be 1..65535 (a u16 in the info reply), got "
                             f"{info.n_out}")
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
        reply = info.info_reply()

        count = Signal(range(max(info.n_in, info.n_out, len(reply)) + 1))
        nbytes = Signal(range(max(in_bytes, out_bytes, 4) + 1))
        word = Signal(32)                                   # bytes to send, LSB first
        value = Signal(8 * in_bytes)                        # input value being assembled
        best = Signal(signed(info.out_bits))
        class_bytes = info.class_bytes
        best_idx = Signal(8 * class_bytes)
        judge = Signal()                                    # the logit is in word
        wins = Signal()                                     # ... and is the best yet
        done_seen = Signal()
        # End-of-count flags, set one step ahead (the compares feed only these flip-flops):
        # count_end is count == the phase's last index (reply byte, input value, logit),
        # nbytes_end is nbytes == in_bytes - 1 while receiving a value and nbytes == 1 while
        # sending one; first_logit is count == 0.
        count_end = Signal()
        nbytes_end = Signal()
        first_logit = Signal()

        # One flip-flop per state (one-hot), so the image handshake and the engine's start
        # are flip-flops, and a state's next value is an OR of its arcs: no decode of an
        # encoded state lies on the paths into the engine or out of its handshake.
        fsm = OneHot(m, _STATES, "IDLE")
        st, arc = fsm.st, fsm.arc

        rx, tx = self.rx, self.tx
        is_infer = Signal()
        is_info = Signal()
        m.d.comb += [is_infer.eq(rx.payload == CMD_INFER), is_info.eq(rx.payload == CMD_INFO)]
        sent = {name: Signal(name=f"sent_{name.lower()}") for name in _TX_STATES}
        m.d.comb += [sent[name].eq(st[name] & tx.ready) for name in _TX_STATES]

        # The arcs. A state's registers are loaded in every cycle of the state that comes
        # before (the word while nothing is being sent, the counters while they are unused),
        # so most loads are enabled by a state's flip-flop alone, not by its arc.
        arc("IDLE", rx.valid & is_infer, "START")
        arc("IDLE", rx.valid & ~is_infer & is_info, "INFO")
        arc("IDLE", rx.valid & ~is_infer & ~is_info, "UNKNOWN")
        arc("UNKNOWN", tx.ready, "IDLE")
        arc("INFO", tx.ready & count_end, "IDLE")
        arc("START", 1, "RX_VALUE")
        arc("RX_VALUE", rx.valid & nbytes_end, "PUSH")
        arc("PUSH", self.img.ready & count_end, "HEADER")
        arc("PUSH", self.img.ready & ~count_end, "RX_VALUE")
        arc("HEADER", tx.ready, "LOGIT")
        got_logit = arc("LOGIT", self.logits.valid, "LOGIT_TX")
        logit_sent = Signal()           # the last byte of a logit goes
        m.d.comb += logit_sent.eq(sent["LOGIT_TX"] & nbytes_end)
        arc("LOGIT_TX", tx.ready & nbytes_end & count_end, "CLASS")
        arc("LOGIT_TX", tx.ready & nbytes_end & ~count_end, "LOGIT")
        arc("CLASS", tx.ready & nbytes_end if class_bytes > 1 else tx.ready, "WAIT_DONE")
        arc("WAIT_DONE", done_seen, "CYCLES")
        arc("CYCLES", tx.ready & nbytes_end, "IDLE")

        # The word: one term per source, selected by flip-flops or a flip-flop and a ready.
        # IDLE: the reply to the command byte; INFO: the next byte of the info reply (count <
        # len(reply) there, so its low bits pick it); PUSH: "R"; LOGIT: the logit; LOGIT_TX
        # and CYCLES: the next byte, or after the last logit's last byte the class;
        # WAIT_DONE: the cycle count.
        # A constant table indexed by the count, not a Switch: Verilog simulators evaluate an
        # ``always @*`` case block only when its index changes, and the count stays 0 from
        # time 0 to the first info reply (Icarus then sends an undefined byte).
        info_byte = Signal(8)
        info_table = Const(int.from_bytes(reply[1:], "little"), 8 * (len(reply) - 1))
        m.d.comb += info_byte.eq(info_table.word_select(
            count[:max(1, (len(reply) - 2).bit_length())], 8))
        class_next = Signal()           # LOGIT_TX at the last byte of the last logit
        m.d.comb += class_next.eq(st["LOGIT_TX"] & nbytes_end & count_end)
        shift = sent["LOGIT_TX"] | sent["CYCLES"]
        if class_bytes > 1:
            shift = shift | sent["CLASS"]
        terms = [
            (st["IDLE"], Mux(is_info, reply[0], REPLY_UNKNOWN)),
            (sent["INFO"], info_byte),
            (st["PUSH"], REPLY_RESULT),
            (st["LOGIT"], self.logits.payload),
            (st["WAIT_DONE"], self.cycles),
            (shift, Mux(class_next, Mux(wins, count, best_idx), word >> 8)),
        ]
        hold = ~Cat(sel for sel, _ in terms).any()
        m.d.sync += word.eq(_or_tree([Mux(sel, val, 0) for sel, val in terms]
                                     + [Mux(hold, word, 0)]))

        # count: the index of the reply byte, input value or logit. count_end is set on
        # leaving IDLE for the first phase (INFO or the input values) and on leaving PUSH
        # for the logits.
        with m.If(st["IDLE"]):
            m.d.sync += [count.eq(0),
                         count_end.eq(Mux(is_infer, info.n_in == 1, len(reply) == 1))]
        with m.If(sent["INFO"]):
            m.d.sync += [count.eq(count + 1), count_end.eq(count == len(reply) - 2)]
        with m.If(st["PUSH"] & self.img.ready):
            with m.If(count_end):
                m.d.sync += [count.eq(0), count_end.eq(info.n_out == 1)]
            with m.Else():
                m.d.sync += [count.eq(count + 1), count_end.eq(count == info.n_in - 2)]
        with m.If(logit_sent):
            m.d.sync += [count.eq(count + 1), count_end.eq(count == info.n_out - 2)]

        # nbytes: the byte of a value being received or sent.
        with m.If(st["START"] | st["PUSH"]):
            m.d.sync += [nbytes.eq(0), nbytes_end.eq(in_bytes == 1)]
        with m.If(st["RX_VALUE"] & rx.valid):
            m.d.sync += [value.eq(Cat(value[8:], rx.payload)), nbytes.eq(nbytes + 1),
                         nbytes_end.eq(nbytes == in_bytes - 2)]
        with m.If(st["LOGIT"]):
            m.d.sync += [nbytes.eq(out_bytes), nbytes_end.eq(out_bytes == 1)]
        with m.If(st["WAIT_DONE"]):
            m.d.sync += [nbytes.eq(4), nbytes_end.eq(0)]
        with m.If(shift):
            m.d.sync += [nbytes.eq(nbytes - 1), nbytes_end.eq(nbytes == 2)]
        if class_bytes > 1:             # the class's bytes follow the last logit's
            with m.If(sent["LOGIT_TX"] & class_next):
                m.d.sync += [nbytes.eq(class_bytes), nbytes_end.eq(0)]

        # The running argmax (ties to the lower index), in the logit's first LOGIT_TX cycle,
        # from the word register (it holds the logit unshifted then), not from the engine's
        # payload: that is the engine's unload lane multiplexer, and the compare behind it
        # was a wide engine's critical path (``lane -> link.best``; docs/boards.md,
        # "Products in LUTs"). The class byte takes ``count``
        # when the last logit wins in the very cycle it is chosen (one-byte logits).
        with m.If(st["PUSH"]):
            m.d.sync += first_logit.eq(1)
        with m.If(logit_sent):
            m.d.sync += first_logit.eq(0)
        m.d.sync += judge.eq(got_logit)
        logit = word[:info.out_bits].as_signed()
        m.d.comb += wins.eq(judge & (first_logit | (logit > best)))
        with m.If(wins):
            m.d.sync += [best.eq(logit), best_idx.eq(count)]

        # ``done`` may be a pulse or a level held until the next start: only a ``done`` seen
        # after the last input value (from HEADER on) counts for this run.
        with m.If(st["HEADER"]):
            m.d.sync += done_seen.eq(0)
        with m.Elif(self.done):
            m.d.sync += done_seen.eq(1)

        m.d.comb += [
            rx.ready.eq(fsm.flag(("IDLE", "RX_VALUE"), "rx_ready")),
            tx.valid.eq(fsm.flag(_TX_STATES, "tx_valid")),
            tx.payload.eq(word[:8]),
            self.img.valid.eq(st["PUSH"]),
            self.img.payload.eq(value[:info.in_bits]),
            self.logits.ready.eq(st["LOGIT"]),
            self.start.eq(st["START"]),
            self.busy.eq(~fsm.flag(("IDLE", "UNKNOWN"), "idle")),
        ]
        fsm.finish()
        return m


def _or_tree(terms: list):
    """OR of ``terms`` as a balanced tree."""
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
