"""Board top in simulation: a UART model on the host side of the serial line, the protocol of
dynfix.boards.protocol, and a stand-in engine (until the real one is wired in)."""

import numpy as np
import pytest
from amaranth.lib import wiring
from amaranth.sim import Simulator

from dynfix.boards.board_top import BoardTop, check_link
from dynfix.boards.protocol import (CMD_INFO, INFO_LEN, LinkInfo, infer_request,
                                    parse_result)
from dynfix.boards.uart_model import uart_recv, uart_send
from dynfix.hw.host_interface import EngineHostSignature

from board_helpers import EchoEngine

DIV = 8


def run_host(top: BoardTop, host, rate: float = 1.0):
    """Simulate ``top`` with ``host(ctx, send, received)`` as the host testbench; a background
    UART receiver appends every byte the board sends to ``received``."""
    received = bytearray()

    async def send(ctx, data: bytes):
        await uart_send(ctx, top.uart_rx, data, DIV * rate)

    async def listener(ctx):
        while True:
            received.extend(await uart_recv(ctx, top.uart_tx, 1, DIV * rate, timeout=10**9))

    async def bench(ctx):
        ctx.set(top.uart_rx, 1)
        await ctx.tick().repeat(10)
        await host(ctx, send, received)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(listener, background=True)
    sim.add_testbench(bench)
    sim.run()


async def wait_bytes(ctx, received: bytearray, n: int, limit: int = 200_000) -> bytes:
    for _ in range(limit):
        if len(received) >= n:
            break
        await ctx.tick()
    assert len(received) == n, f"expected {n} bytes, got {len(received)}: {bytes(received)!r}"
    data = bytes(received)
    received.clear()
    return data


@pytest.mark.parametrize("bits,rate", [(8, 1.0), (12, 1.03)])
def test_board_top_protocol(bits, rate):
    n_in, n_out = 12, 10
    info = LinkInfo(n_in=n_in, n_out=n_out, in_bits=bits, out_bits=bits)
    engine = EchoEngine(n_in, n_out, bits)
    top = BoardTop(engine, info, divisor=DIV)
    rng = np.random.default_rng(bits)
    lim = 1 << (bits - 1)
    images = [rng.integers(-lim, lim, n_in), np.full(n_in, lim - 1), np.zeros(n_in, int)]
    results, leds = [], []

    async def host(ctx, send, received):
        await send(ctx, bytes([CMD_INFO]))
        assert LinkInfo.parse(await wait_bytes(ctx, received, INFO_LEN)) == info
        for x in images:
            await send(ctx, infer_request(x, info))
            leds.append(ctx.get(top.led_busy))
            results.append(parse_result(await wait_bytes(ctx, received,
                                                         1 + info.result_len()), info))
            await ctx.tick().repeat(10)
            leds.append(ctx.get(top.led_done))
            results[-1] = (results[-1], ctx.get(engine.cycles))
        await send(ctx, b"Z")
        assert await wait_bytes(ctx, received, 1) == b"?"

    run_host(top, host, rate)
    for x, (res, cycles) in zip(images, results):
        ref = EchoEngine.reference(x, n_out, bits)
        np.testing.assert_array_equal(res.logits, ref)
        assert res.predicted == int(np.argmax(ref))
        assert res.cycles == cycles and res.cycles >= n_in + n_out
    assert results[2][0].predicted == 0          # all-zero logits: the first index wins
    assert leds == [1, 1] * len(images)


def test_board_top_checks_widths():
    """What BoardTop checks first, on the engine's signature alone: nothing is built."""
    with pytest.raises(ValueError, match="engine.i carries 8-bit"):
        check_link(EngineHostSignature(8), LinkInfo(4, 4, 16, 8))
    with pytest.raises(ValueError, match="engine.o carries 8-bit values, the link 12-bit"):
        check_link(EngineHostSignature(8), LinkInfo(4, 4, 8, 12))
    with pytest.raises(TypeError, match="must be an EngineHostSignature"):
        check_link(wiring.Signature({}), LinkInfo(4, 4, 8, 8))
    check_link(EngineHostSignature(8), LinkInfo(4, 4, 8, 8))


def test_engine_host_signature():
    sig = EngineHostSignature(8)
    assert sig == EngineHostSignature(8) and sig != EngineHostSignature(9)
    assert sig.data_bits == 8 and repr(sig) == "EngineHostSignature(8)"
    assert list(sig.members) == ["i", "o", "start", "busy", "done", "cycles", "layer_sel",
                                 "layer_cycles"]
    with pytest.raises(TypeError, match="positive integer"):
        EngineHostSignature(0)


@pytest.fixture(scope="module")
def digits_engine(tmp_path_factory):
    """The bundled digits model quantized, compiled for a small engine."""
    from dynfix.cli import main
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel
    from dynfix.quant.load import load_model
    from dynfix.quant.qspec_io import load_qspec

    q = tmp_path_factory.mktemp("top") / "q.yaml"
    assert main(["quantize", "digits", "--calib", "digits", "--output", str(q)]) == 0
    model = load_model("digits")
    spec = load_qspec(q, model)
    cm = compile_model(model, spec, EngineConfig(tn=8, tm=8))
    im = IntModel(model, spec)
    x, y = load_digits("test")
    return cm, im, x, y


def test_board_top_real_engine_bit_exact(digits_engine):
    """The generated engine behind the UART link: logits, class and cycle count for test
    images, bit for bit against the integer model."""
    from dynfix.hw.generate import build_engine

    cm, im, x, y = digits_engine
    cfg = cm.config
    info = LinkInfo(n_in=int(np.prod(cm.input_shape)), n_out=cm.output_len,
                    in_bits=cfg.data_bits, out_bits=cfg.data_bits)
    engine = build_engine(cm)
    top = BoardTop(engine, info, divisor=DIV)
    images = [0, 1]
    results = []

    async def host(ctx, send, received):
        for i in images:
            xq = im.quantize_input(x[i:i + 1])[0]
            await send(ctx, infer_request(xq, info))
            reply = await wait_bytes(ctx, received, 1 + info.result_len(), limit=100_000)
            results.append((parse_result(reply, info), ctx.get(engine.cycles)))

    run_host(top, host)
    for i, (res, cycles) in zip(images, results):
        ref = im.forward(im.quantize_input(x[i:i + 1]))[cm.output_name].reshape(-1)
        assert len(set(ref.tolist())) > 1                     # a real, varied output
        np.testing.assert_array_equal(res.logits, ref)
        assert res.predicted == int(np.argmax(ref))
        assert res.cycles == cycles > 0
    assert len({r.cycles for r, _ in results}) == 1          # data-independent schedule


@pytest.mark.parametrize("n_in,n_out,in_bits,out_bits", [
    (1, 1, 8, 8), (2, 1, 12, 12), (1, 3, 16, 8), (5, 4, 8, 20), (2, 300, 8, 8)])
def test_host_link_streams(n_in, n_out, in_bits, out_bits):
    """The link alone, at the edges of its counts (one value, one logit, several bytes per
    value, more outputs than a class byte counts: a two-byte class), with random stalls on
    every stream: the info reply, the values passed on in order, and the logits, class and
    cycle count sent back (the end-of-count flags are set a step ahead, so these edges are
    where they could slip)."""
    from dynfix.boards.host_link import HostLink
    from dynfix.boards.protocol import CMD_INFER, encode_values

    info = LinkInfo(n_in=n_in, n_out=n_out, in_bits=in_bits, out_bits=out_bits)
    link = HostLink(info)
    rng = np.random.default_rng(n_in * 100 + n_out)
    lim_in, lim_out = 1 << (in_bits - 1), 1 << (out_bits - 1)
    runs = [(rng.integers(-lim_in, lim_in, n_in), rng.integers(-lim_out, lim_out, n_out),
             int(rng.integers(1 << 32))) for _ in range(2)]
    runs.append((np.zeros(n_in, int), np.full(n_out, -lim_out), 7))   # ties: the first index
    if n_out > 256:                     # a class past one byte: the maximum at the last index
        runs[0][1][:] = np.minimum(runs[0][1], lim_out - 2)
        runs[0][1][-1] = lim_out - 1
    stall = np.random.default_rng(1)
    got_img, replies = [], bytearray()

    async def pause(ctx, most: int):
        for _ in range(int(stall.integers(0, most))):
            await ctx.tick()

    async def wait_for(ctx, signal, limit: int = 1000):
        """Tick until ``signal`` is high (a stuck link fails instead of hanging)."""
        for _ in range(limit):
            if ctx.get(signal):
                return
            await ctx.tick()
        raise AssertionError(f"{signal.name} stayed low for {limit} cycles")

    async def host(ctx):
        data = bytes([CMD_INFO, ord("Z")])
        for x, _, _ in runs:
            data += bytes([CMD_INFER]) + encode_values(x, in_bits)
        for b in data:
            ctx.set(link.rx.payload, b)
            ctx.set(link.rx.valid, 1)
            await wait_for(ctx, link.rx.ready, 1000 + 20 * n_out)    # a result goes first
            await ctx.tick()
            ctx.set(link.rx.valid, 0)
            await pause(ctx, 3)

    async def engine(ctx):
        for x, logits, cycles in runs:
            await wait_for(ctx, link.start)
            ctx.set(link.done, 0)
            await ctx.tick()
            for _ in x:
                for _ in range(1000):
                    ready = bool(stall.integers(0, 2))
                    ctx.set(link.img.ready, ready)
                    taken = ready and ctx.get(link.img.valid)
                    if taken:
                        got_img.append(ctx.get(link.img.payload))
                    await ctx.tick()
                    if taken:
                        break
                else:
                    raise AssertionError("the link offered no value")
            ctx.set(link.img.ready, 0)
            for v in logits:
                await pause(ctx, 4)
                ctx.set(link.logits.payload, int(v))
                ctx.set(link.logits.valid, 1)
                await wait_for(ctx, link.logits.ready)
                await ctx.tick()
                ctx.set(link.logits.valid, 0)
            ctx.set(link.cycles, cycles)
            ctx.set(link.done, 1)                      # held as a level until the next start
        expected = INFO_LEN + 1 + len(runs) * (1 + info.result_len())
        for _ in range(10_000):
            if len(replies) >= expected:
                break
            await ctx.tick()
        await ctx.tick().repeat(20)                    # nothing more comes

    async def sink(ctx):
        while True:
            ready = bool(stall.integers(0, 2))
            ctx.set(link.tx.ready, ready)
            if ready and ctx.get(link.tx.valid):
                replies.append(ctx.get(link.tx.payload))
            await ctx.tick()

    sim = Simulator(link)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(engine)
    sim.add_testbench(sink, background=True)
    sim.run()

    assert bytes(replies[:INFO_LEN]) == info.info_reply()
    assert replies[INFO_LEN] == ord("?")
    rest = bytes(replies[INFO_LEN + 1:])
    np.testing.assert_array_equal(got_img, np.concatenate([x for x, _, _ in runs]))
    for x, logits, cycles in runs:
        n = 1 + info.result_len()
        res, rest = parse_result(rest[:n], info), rest[n:]
        np.testing.assert_array_equal(res.logits, logits)
        assert res.predicted == int(np.argmax(logits)) and res.cycles == cycles
    assert rest == b""
