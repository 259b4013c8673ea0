"""A ring buffer of weight words, streamed from the bulk memory over AXI4 once per inference."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .axi import MAX_BURST_BEATS, RESP_OKAY, AxiReadSignature, times_const, word_addr_bits
from .bulk_reader import BulkReader

__all__ = ["WeightRing", "beats_per_word", "bulk_image"]


def beats_per_word(word_bits: int, bus_bits: int) -> int:
    """Bus words (beats) an engine word of ``word_bits`` takes on a ``bus_bits`` bus:
    ``ceil(word_bits / bus_bits)``."""
    if word_bits < 1 or bus_bits < 1:
        raise ValueError(f"word_bits and bus_bits must be positive, not {word_bits}, "
                         f"{bus_bits}")
    return -(-word_bits // bus_bits)


def bulk_image(words: list[int], word_bits: int, bus_bits: int) -> list[int]:
    """The bus words that hold ``words`` in the bulk memory, as :class:`WeightRing` reads
    them: each engine word takes :func:`beats_per_word` consecutive bus words, lowest bits
    first; the bits above ``word_bits`` in its last bus word are 0."""
    k = beats_per_word(word_bits, bus_bits)
    mask = (1 << bus_bits) - 1
    out = []
    for i, w in enumerate(words):
        if not 0 <= w < 1 << word_bits:
            raise ValueError(f"word {i} ({w:#x}) does not fit {word_bits} bits")
        out.extend((w >> (j * bus_bits)) & mask for j in range(k))
    return out


class WeightRing(wiring.Component):
    """A ring of ``depth`` engine words that a :class:`~dynfix.hw.bulk_reader.BulkReader`
    fills from the weight image in the bulk memory: one pass over its first ``words`` words
    per ``start``.

    The engine consumes the image's words strictly in order (one pass per inference), in
    tiles of consecutive words that it may read many times. Word ``n`` of the pass lives in
    ring slot ``n mod depth``; ``wr_ptr`` counts the words written, ``rd_ptr`` is the
    consumer's oldest word still needed (both modulo ``2 * depth``, so a full ring and an
    empty one differ). A word is written only while its slot is free: ``(wr_ptr - rd_ptr)
    mod 2 * depth < depth``; until then the reader's words wait on the bus (``rready``
    low), so the ring itself is the only buffer.

    ``start`` sets ``wr_ptr`` to 0 and asks for a pass; the reader is asked (``words * k``
    bus words from ``base``, ``k`` = :func:`beats_per_word`) as soon as ``enable`` is high
    and it is idle. The ``k`` beats of an engine word are written into the slot lowest bits
    first (see :func:`bulk_image`); bits above ``word_bits`` in the last one are not read.
    The memory write of a word's last beat and the increment of ``wr_ptr`` that counts it
    share one clock edge, so a slot is readable as soon as ``wr_ptr`` shows its word.

    With ``credit`` the ring is a master that can share its AXI read port with others
    (through :class:`~dynfix.hw.axi_read_arbiter.AxiReadArbiter`, beside the map DMA). On a
    shared port, read data left waiting on the bus would block every later read (one ID:
    bursts return in request order), the DMA's too; the engine frees ring slots only as it
    computes, and it computes only once the DMA has brought its map strip, so nothing would
    ever move again. So the ring asks only for what it can take at once: an AR goes out
    only if its beats, those of the bursts issued and not yet received, and those the ring
    holds (``k`` a word written and not yet consumed, and those of a word partly written)
    fit ``depth * k``. ``rready`` is then never low for want of room: the ring's read data
    never waits on the bus. The gate is a register, from the cycle before's state and
    burst (the burst's own length once the reader shows it, ``max_burst`` before then), so
    the AR channel stays registers but for an AND on ``arvalid`` and ``arready``; slots
    freed or beats received in a cycle open it the next.

    Its bursts are then at most ``max_burst`` beats, the largest power of two not above
    ``depth * k // 2``: the ring must be able to hold one, and a burst asked for only once
    the ring has room for all of it must not keep from the consumer the words it waits
    for. A consumer that needs ``T`` words from ``rd_ptr`` on before it moves ``rd_ptr``
    gets them if ``T <= depth - ceil((max_burst - 1) / k)``, which holds for every
    ``T <= depth / 2`` (the engine's ring holds two of its largest tiles); a larger ``T``
    can stall it for good.

    Parameters
    ----------
    word_bits : int
        Bits of an engine word.
    depth : int
        Ring words, a power of two, at least 2.
    image_words : int
        Engine words in the image, at least 1: the most a pass reads.
    bus_bits : int
        AXI data width.
    addr_width : int
        AXI byte address bits; the image must fit below ``2 ** addr_width`` bytes.
    base : int
        Bus-word address of the image's first bus word.
    outstanding : int
        Most bursts the reader keeps in flight.
    credit : bool
        Ask only for bursts the ring can take at once (see above). False (the default):
        one request for the whole pass, whose read data waits on the bus while the ring
        is full, for a port of the ring's own.

    Members
    -------
    bus : Out(AxiReadSignature(addr_width, bus_bits))
    start : In(1)
        Pulse: start a pass (the previous one must have ended: every word consumed).
    words : In(unsigned(bits of image_words))
        Engine words of the pass (1 .. ``image_words``), read at ``start``.
    enable : In(1)
        The bulk memory holds the image: a pass asked for starts only while it is high.
    wr_ptr : Out(unsigned(log2(depth) + 1))
        Words of the pass written, modulo ``2 * depth`` (a register).
    rd_ptr : In(unsigned(log2(depth) + 1))
        The consumer's oldest needed word, modulo ``2 * depth``; moves only forward and
        never past ``wr_ptr``.
    addr : In(unsigned(log2(depth)))
        A ring slot to read.
    data : Out(unsigned(word_bits))
        That slot's word, one cycle after ``addr``.
    error : Out(1)
        A beat came with an ``rresp`` other than OKAY; held until reset.
    """

    def __init__(self, word_bits: int, depth: int, image_words: int, bus_bits: int,
                 addr_width: int, base: int = 0, outstanding: int = 2,
                 credit: bool = False, segments: list[tuple[int, int]] | None = None):
        if word_bits < 1:
            raise ValueError(f"word_bits must be at least 1, not {word_bits}")
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two of at least 2, not {depth}")
        if image_words < 1:
            raise ValueError(f"image_words must be at least 1, not {image_words}")
        if base < 0:
            raise ValueError(f"base must not be negative, not {base}")
        bus = AxiReadSignature(addr_width, bus_bits)   # checks the widths
        self._k = beats_per_word(word_bits, bus_bits)
        self._count = image_words * self._k
        space = 1 << word_addr_bits(addr_width, bus_bits)
        if base + self._count > space:
            raise ValueError(f"the image (bus words {base} .. {base + self._count - 1}) does "
                             f"not fit {addr_width} address bits")
        self._word_bits, self._depth, self._bus_bits = word_bits, depth, bus_bits
        self._addr_width, self._base, self._outstanding = addr_width, base, outstanding
        self._credit = bool(credit)
        self._segments = [(int(a), int(n)) for a, n in segments or []]
        for a, n in self._segments:
            if n < 1 or a < 0 or a + n > image_words:
                raise ValueError(f"segment ({a}, {n}) is not a run of the image's "
                                 f"{image_words} words")
        if self._segments:
            self._count = max(n for _, n in self._segments) * self._k
        half = depth * self._k // 2             # at least 1
        self._max_burst = (min(1 << (half.bit_length() - 1), MAX_BURST_BEATS) if credit
                           else None)
        slot_bits = depth.bit_length() - 1
        super().__init__({
            "bus": Out(bus),
            "start": In(1),
            "words": In(unsigned(image_words.bit_length())),
            "enable": In(1),
            "wr_ptr": Out(unsigned(slot_bits + 1)),
            "rd_ptr": In(unsigned(slot_bits + 1)),
            "addr": In(unsigned(slot_bits)),
            "data": Out(unsigned(word_bits)),
            "error": Out(1),
        })

    @property
    def max_burst(self) -> int | None:
        """The longest read burst in beats with ``credit``; None without (the bus's
        limits only)."""
        return self._max_burst

    def elaborate(self, platform):
        m = Module()
        k, b, slot_bits = self._k, self._bus_bits, self._depth.bit_length() - 1

        m.submodules.reader = reader = BulkReader(
            self._addr_width, b, self._count.bit_length(), outstanding=self._outstanding,
            max_burst=self._max_burst)
        if not self._credit:
            wiring.connect(m, wiring.flipped(self.bus), reader.bus)
        pending = Signal()                  # a pass was asked for and not yet started
        if self._segments:
            self._walk_segments(m, reader, pending)
        else:
            count = Signal.like(reader.req.payload.count)
            with m.If(self.start):
                m.d.sync += [pending.eq(1), count.eq(times_const(self.words, k))]
            with m.Elif(reader.req.valid & reader.req.ready):
                m.d.sync += pending.eq(0)
            m.d.comb += [
                reader.req.payload.addr.eq(self._base),
                reader.req.payload.count.eq(count),
            ]
        m.d.comb += reader.req.valid.eq(pending & self.enable)

        # The top bit of the fill level: set exactly when the ring holds depth words.
        fill = Signal(unsigned(slot_bits + 1))
        m.d.comb += fill.eq(self.wr_ptr - self.rd_ptr)
        m.d.comb += reader.o.ready.eq(~fill[-1])
        beat = reader.o.valid & reader.o.ready

        with m.If(beat & (self.bus.rresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)

        # Each beat is written straight into its slice of the slot (no assembly register);
        # the word is readable once its last beat is in. The consumer never reads the slot
        # being written (it is free: its word was consumed), so synthesis need not emulate
        # read-before-write on a collision (``no_rw_check``).
        m.submodules.mem = mem = memory.Memory(shape=unsigned(k * b), depth=self._depth,
                                               init=[], attrs={"no_rw_check": 1})
        wr = mem.write_port(granularity=b)
        rd = mem.read_port()
        m.d.comb += [rd.addr.eq(self.addr), self.data.eq(rd.data[:self._word_bits]),
                     wr.addr.eq(self.wr_ptr[:slot_bits]),
                     wr.data.eq(Cat(reader.o.payload for _ in range(k)))]

        pos = Signal(range(k))                  # beats of the word being written
        if k == 1:
            last = beat
            m.d.comb += wr.en.eq(beat)
        else:
            last = beat & (pos == k - 1)
            m.d.comb += wr.en.eq(Mux(beat, 1 << pos, 0))
            with m.If(beat):
                with m.If(pos == k - 1):
                    m.d.sync += pos.eq(0)
                with m.Else():
                    m.d.sync += pos.eq(pos + 1)
            with m.If(self.start):
                m.d.sync += pos.eq(0)
        with m.If(self.start):
            m.d.sync += self.wr_ptr.eq(0)
        with m.Elif(last):
            m.d.sync += self.wr_ptr.eq(self.wr_ptr + 1)

        if self._credit:
            self._gate(m, reader, fill, pos)
        return m

    def _walk_segments(self, m: Module, reader: BulkReader, pending: Signal) -> None:
        """A pass of ``segments``: one request per run of the image, in order, each as soon
        as the reader takes requests again (it is idle once the last one's words are out),
        from a table of the runs' addresses and lengths (``words`` is not read)."""
        k, segs = self._k, self._segments
        addr_shape = reader.req.payload.addr.shape()
        count_shape = reader.req.payload.count.shape()
        m.submodules.seg_addr = addr_rom = memory.Memory(
            shape=addr_shape, depth=len(segs), init=[self._base + a * k for a, _ in segs])
        m.submodules.seg_count = count_rom = memory.Memory(
            shape=count_shape, depth=len(segs), init=[n * k for _, n in segs])
        seg = Signal(range(len(segs)))
        a_rd, n_rd = addr_rom.read_port(domain="comb"), count_rom.read_port(domain="comb")
        m.d.comb += [a_rd.addr.eq(seg), n_rd.addr.eq(seg),
                     reader.req.payload.addr.eq(a_rd.data),
                     reader.req.payload.count.eq(n_rd.data)]
        with m.If(self.start):
            m.d.sync += [pending.eq(1), seg.eq(0)]
        with m.Elif(reader.req.valid & reader.req.ready):
            m.d.sync += pending.eq(seg != len(segs) - 1)
            with m.If(seg != len(segs) - 1):
                m.d.sync += seg.eq(seg + 1)

    def _gate(self, m: Module, reader: BulkReader, fill: Signal, pos: Signal) -> None:
        """Join the reader to ``bus`` with its AR let through only while ``ok``: the beats
        of the burst it shows (``max_burst`` while it shows none), of the bursts in flight
        (``owed``) and those the ring holds (``fill`` words and ``pos`` beats) fit the ring,
        as of the cycle before. That state only gets better until the next AR (slots are
        freed, beats move from ``owed`` to the ring), so ``ok`` stays high once it is, and
        so does ``arvalid`` until its handshake, as AXI requires; ``ok`` is low the cycle
        after a handshake, whose burst the state shows only from then on."""
        k, cap = self._k, self._depth * self._k
        bus, rb = self.bus, reader.bus
        for name, member in rb.signature.members.items():
            if name in ("arvalid", "arready"):
                continue
            if member.flow == Out:
                m.d.comb += getattr(bus, name).eq(getattr(rb, name))
            else:
                m.d.comb += getattr(rb, name).eq(getattr(bus, name))
        ok = Signal()
        m.d.comb += [bus.arvalid.eq(rb.arvalid & ok), rb.arready.eq(bus.arready & ok)]
        ar = bus.arvalid & bus.arready
        r = bus.rvalid & bus.rready

        owed = Signal(range(cap + 1))           # beats of the bursts in flight
        m.d.sync += owed.eq(owed + Mux(ar, bus.arlen + 1, 0) - r)
        # As a pass starts ``fill`` may read up to 2 * depth - 1 for a cycle (``rd_ptr`` set
        # to 0 before or after ``wr_ptr`` is): an overestimate, which only holds an AR back.
        need = Signal(range(4 * cap + 1))
        m.d.comb += need.eq(times_const(fill, k) + pos + owed + Mux(rb.arvalid, rb.arlen + 1,
                                                        self._max_burst))
        m.d.sync += ok.eq(~ar & (need <= cap))
