"""A user's own PyTorch model, trained here on random data, exported with torch.onnx.export
and taken through the whole flow by the CLI, with no dynfix code written for it.

PyTorch (CPU build) is a dev dependency; without it this module is skipped.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.hw.generate import TOP_NAME

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::FutureWarning")


class ViewNet(nn.Module):
    """Written the old way: ``x.view(x.size(0), -1)`` (exported as Shape/Gather/Concat ->
    Reshape by the TorchScript exporter)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))


def train(seed: int = 0) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A small CNN fitted to random 3x8x8 inputs labelled by a random linear teacher."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(256, 3, 8, 8, generator=g)
    teacher = torch.randn(3 * 8 * 8, 4, generator=g)
    y = ((x.reshape(256, -1) - 0.5) @ teacher).argmax(dim=1)
    net = ViewNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    return net, x.numpy(), y.numpy()


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torch_user")
    net, x, y = train()
    example = torch.from_numpy(x[:1])
    # The default exporter (torch.export based; needs onnxscript), as a user would call it.
    torch.onnx.export(net, (example,), str(folder / "net.onnx"), input_names=["x"],
                      output_names=["logits"], dynamic_shapes={"x": {0: "batch"}})
    # The TorchScript exporter (dynamo=False), still common in older scripts.
    torch.onnx.export(net, (example,), str(folder / "net_ts.onnx"), dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}})
    np.savez(folder / "data.npz", x=x, y=y)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    return folder, x, y, ref


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", ["net.onnx", "net_ts.onnx"])
def test_exports_load_and_match_pytorch(user_model, name):
    from dynfix.api import load_model
    from dynfix.quant.float_model import predict
    folder, x, _, ref = user_model
    model = load_model(folder / name)
    ops = [layer.op for layer in model.layers]
    assert ops.count("conv") == 2 and ops.count("linear") == 1   # BatchNorm folded
    got = predict(model, x).reshape(ref.shape)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("icarus")
def test_user_model_through_the_whole_flow(user_model, tmp_path):
    folder, x, y, ref = user_model
    out = tmp_path / "flow"
    code, stdout, stderr = run_cli(["flow", str(folder / "net.onnx"), "--data",
                                    str(folder / "data.npz"), "--images", "2", "--output",
                                    str(out), "--json"])
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert rep["simulation"]["mismatches"] == 0
    assert rep["accuracy"]["hardware"] == rep["accuracy"]["integer_simulated"]
    torch_acc = float(np.mean(ref.argmax(axis=1) == y))
    assert rep["accuracy"]["float"] == pytest.approx(torch_acc, abs=1 / len(y))
    assert rep["accuracy"]["float"] > 0.5            # it learned something
    assert rep["accuracy"]["integer"] >= rep["accuracy"]["float"] - 0.05
    assert len(rep["layers"]) == 3
    assert "not synthesized" in rep["performance"]["clock_source"]
    assert rep["resources"]["source"].startswith("estimate") and rep["timing"] == {}
    for name in ("quant.yaml", f"hw/{TOP_NAME}.v", "summary.md", "plots/layers.png"):
        assert (out / name).is_file()
