"""Test helper: the cocotb test of a bare engine driven by :class:`cocotb_drivers.EngineHost`
(the direct path); run by :func:`cocotb_drivers.run_direct`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cocotb

from cocotb_drivers import EngineHost, job_from_env


@cocotb.test()
async def run_images(dut):
    job = job_from_env()
    host = EngineHost(dut)
    await host.reset()
    results = [asdict(await host.run_image(image, job["n_out"], job["n_layers"]))
               for image in job["images"]]
    Path(job["result"]).write_text(json.dumps(results))
