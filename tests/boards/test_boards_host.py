"""run-board's host client against a fake serial port that answers like the board top."""

import numpy as np
import pytest

import dynfix.api
import dynfix.boards.host as host
from dynfix.boards.protocol import (CMD_INFER, CMD_INFO, REPLY_RESULT, LinkInfo,
                                    decode_values, encode_values)
from dynfix.cli import main
from dynfix.hw.compiler import plan_groups
from dynfix.quant.int_model import IntModel
from dynfix.quant.load import load_model


class FakeBoard:
    """Implements the protocol in Python with the integer model (``corrupt``: flip logit 0)."""

    def __init__(self, model, spec, corrupt=False):
        self.im = IntModel(model, spec)
        self.out = plan_groups(model)[1]
        n_in = int(np.prod(model.input_shape))
        self.info = LinkInfo(n_in, 10, spec.input_bw, 8)
        self.rx, self.tx, self.corrupt = bytearray(), bytearray(), corrupt

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def reset_input_buffer(self):
        self.tx.clear()

    def write(self, data):
        self.rx.extend(data)
        while self.rx:
            if self.rx[0] == CMD_INFO:
                self.tx.extend(self.info.info_reply())
                del self.rx[:1]
            elif self.rx[0] == CMD_INFER:
                n = 1 + self.info.n_in * self.info.in_bytes
                if len(self.rx) < n:
                    return
                q = decode_values(bytes(self.rx[1:n]), self.info.n_in, self.info.in_bits)
                del self.rx[:n]
                logits = self.im.forward(q.reshape((1,) + self.im.model.input_shape)
                                         )[self.out].reshape(-1)
                if self.corrupt:
                    logits[0] += 1
                self.tx.extend(bytes([REPLY_RESULT]) + encode_values(logits, 8)
                               + bytes([int(np.argmax(logits))]) + (1234).to_bytes(4, "little"))
            else:
                raise AssertionError(f"unexpected byte {self.rx[0]}")

    def read(self, n):
        data = bytes(self.tx[:n])
        del self.tx[:n]
        return data


@pytest.fixture(scope="module")
def qspec(tmp_path_factory):
    q = tmp_path_factory.mktemp("q") / "q.yaml"
    assert main(["quantize", "digits", "--calib", "digits", "--output", str(q)]) == 0
    return q


@pytest.mark.parametrize("corrupt", [False, True])
def test_run_board_fake(qspec, monkeypatch, capsys, corrupt):
    from dynfix.quant.qspec_io import load_qspec
    model = load_model("digits")
    board = FakeBoard(model, load_qspec(qspec, model), corrupt)
    monkeypatch.setattr(dynfix.api, "open_port", lambda port, baud, timeout: board)
    rc = main(["run-board", "--port", "/dev/fake", "--quant", str(qspec), "--images", "5"])
    out = capsys.readouterr().out
    if corrupt:
        assert rc == 1 and "0 bit-exact" in out and "MISMATCH" in out
    else:
        assert rc == 0 and "5 images" in out and "5 bit-exact" in out and "1234 engine" in out


def test_missing_port_is_one_line_error(qspec, capsys):
    rc = main(["run-board", "--port", "/dev/ttyNOPE9", "--quant", str(qspec), "--images", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "serial port /dev/ttyNOPE9 does not exist" in err
    assert err.count("\n") == 1


def test_short_reply_times_out():
    class Silent(FakeBoard):
        def __init__(self):
            self.tx = bytearray()

        def write(self, data):
            pass
    from dynfix.errors import DynfixError
    with pytest.raises(DynfixError, match="sent 0 of 12 bytes"):
        host.BoardClient(Silent()).connect()


class StreamBoard(FakeBoard):
    """A board whose engine takes its input in the compiled model's own order (the first
    conv's windows, ``im2col``): it knows the streams of the test images and answers each
    with that image's integer-model logits, so only the engine's order gets an answer."""

    def __init__(self, model, spec, cm, x):
        super().__init__(model, spec)
        from dynfix.sim.simulate import host_stream
        self.known = {}
        for i in range(len(x)):
            xq = self.im.quantize_input(x[i:i + 1])
            stream = host_stream(cm, xq[0])
            self.known[stream.tobytes()] = self.im.forward(xq)[self.out].reshape(-1)
        self.info = LinkInfo(stream.size, 10, spec.input_bw, 8)

    def write(self, data):
        self.rx.extend(data)
        if self.rx[0] == CMD_INFO:
            self.tx.extend(self.info.info_reply())
            del self.rx[:1]
            return
        n = 1 + self.info.n_in * self.info.in_bytes
        if len(self.rx) < n:
            return
        q = decode_values(bytes(self.rx[1:n]), self.info.n_in, self.info.in_bits)
        del self.rx[:n]
        logits = self.known[np.asarray(q, dtype=np.int64).tobytes()]
        self.tx.extend(bytes([REPLY_RESULT]) + encode_values(logits, 8)
                       + bytes([int(np.argmax(logits))]) + (99).to_bytes(4, "little"))


def test_run_board_sends_the_engine_s_own_order(qspec, tmp_path, monkeypatch, capsys):
    """An engine that takes the first conv's windows: with ``--design`` run-board streams
    them as the engine takes them and every image is bit-exact; with ``--quant`` alone the
    image's size does not match the board's and it says to pass the design, in one line."""
    from dynfix.inputs import load_inputs
    from dynfix.quant.qspec_io import load_qspec
    model = load_model("digits")
    spec = load_qspec(qspec, model)
    g = dynfix.api.generate(str(qspec), tmp_path / "gen", model="digits",
                            config={"tn": 4, "tm": 4, "im2col": 1})
    cm = g.compiled
    assert cm.input_window is not None
    x, _ = load_inputs("digits", "test")
    board = StreamBoard(model, spec, cm, x[:3])
    assert board.info.n_in != int(np.prod(model.input_shape))
    monkeypatch.setattr(dynfix.api, "open_port", lambda port, baud, timeout: board)
    rc = main(["run-board", "--port", "/dev/fake", "--design", str(tmp_path / "gen"),
               "--images", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and "3 bit-exact" in out and "99 engine" in out
    rc = main(["run-board", "--port", "/dev/fake", "--quant", str(qspec), "--images", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "--design" in err and err.count("\n") == 1
