"""Q.yaml records the index width of each shared layer (``share``, ``LayerFormat.share``), so
that a later ``generate`` (the fit) knows to store its weights as codebook indices; files
written without it still load (no layer shared)."""

from __future__ import annotations

import pytest
import yaml

from dynfix.errors import DynfixError
from dynfix.quant.qspec_io import load_qspec, save_qspec, spec_from_dict, spec_to_dict

from hw_models import residual_net, shared_small_net, small_net


def test_share_written_and_read_back(tmp_path):
    model, spec, _ = shared_small_net()
    assert {n: f.share for n, f in spec.layers.items()} == {"c1": 3, "c2": 3, "fc": 3}
    save_qspec(spec, tmp_path / "q.yaml")
    rows = yaml.safe_load((tmp_path / "q.yaml").read_text())["layers"]
    assert [r.get("share") for r in rows] == [3, 3, 3]
    back = load_qspec(tmp_path / "q.yaml", model)
    assert {n: f.share for n, f in back.layers.items()} == {"c1": 3, "c2": 3, "fc": 3}


def test_unshared_and_older_files_have_no_share(tmp_path):
    model, spec, _ = small_net()
    save_qspec(spec, tmp_path / "q.yaml")
    text = (tmp_path / "q.yaml").read_text()
    assert "share" not in text
    assert all(f.share == 0 for f in load_qspec(tmp_path / "q.yaml", model).layers.values())


def test_an_add_row_has_no_share():
    model, spec, _ = residual_net()
    d = spec_to_dict(spec)
    row = next(r for r in d["layers"] if r.get("op") == "add")
    row["share"] = 4
    with pytest.raises(DynfixError, match="an Add has no weights, so no share"):
        spec_from_dict(d, model)
