"""Backends: each loads and stays within its fidelity bound on a real photo; the int8
artefact is built once and reused; the automatic choice and its overrides; threads,
the inference lock, the allocator setting and memory over many requests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROXY_WEIGHTS, ROOT, photo

from animegan import images, runtime
from animegan.weights import load_generator

pytest.importorskip("openvino")
from animegan import ovgraph  # noqa: E402


def _input(name: str, side: int) -> np.ndarray:
    img = images.decode(photo(name)).rgb
    return images.to_array(images.resize(img, images.fit_size(img.size, side)))


@pytest.fixture(scope="module")
def model():
    return load_generator(PROXY_WEIGHTS)


@pytest.fixture(scope="module")
def reference(model):
    """Float32 output of an unoptimised eager model (NCHW, fresh copy) on a real photo."""
    x = _input("astronaut.png", 256)
    eager = load_generator(PROXY_WEIGHTS)
    with torch.inference_mode():
        return x, eager(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """A private artefact cache; calibration at 256 px keeps the build to seconds."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("hub")
    mp.setenv("HF_HUB_CACHE", str(folder))
    mp.setenv(ovgraph.CALIBRATION_SIDE_ENV, "256")
    yield folder
    mp.undo()


def test_fp32_is_exact(model, reference):
    x, ref = reference
    out = runtime.make_backend(model, "torch-fp32")(x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4
    assert runtime.psnr(out, ref) >= 50


def test_bf16_within_bound(model, reference):
    if not runtime.native_bf16():
        with pytest.raises(ValueError, match="cannot run here"):
            runtime.make_backend(model, "torch-bf16")
        pytest.skip("this CPU has no native bf16")
    x, ref = reference
    out = runtime.make_backend(model, "torch-bf16")(x)
    assert runtime.psnr(out, ref) >= runtime.MIN_PSNR


def test_openvino_fp32_graph_matches_the_generator(model, reference):
    """The hand-built OpenVINO graph computes the same function (odd sizes too)."""
    x = _input("rocket.jpg", 101)  # 101 x 67: odd sizes, non-square
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    out = ovgraph.core().compile_model(ovgraph.build(model.state_dict()), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request().infer({0: x})[0]
    assert out.shape == ref.shape == (1, 3, 67, 101)
    assert np.abs(out - ref).max() < 1e-3


def test_int8_built_once_within_bound_and_reused(model, reference, artefacts):
    builds = ovgraph.BUILDS["openvino-int8"]
    be = runtime.make_backend(model, "openvino-int8")
    assert ovgraph.BUILDS["openvino-int8"] == builds + 1
    assert be.name == "openvino-int8"
    x, ref = reference
    assert runtime.psnr(be(x), ref) >= runtime.MIN_PSNR
    assert be.min_psnr >= runtime.MIN_PSNR  # recorded at build time, on every calibration photo

    target = ovgraph.artefact_dir(model.state_dict())
    assert target.is_relative_to(artefacts) and (target / "model.xml").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    again = runtime.make_backend(model, "openvino-int8")  # as after a restart: from disk
    assert ovgraph.BUILDS["openvino-int8"] == builds + 1
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == stamps
    assert np.array_equal(again(x), be(x))


def test_int8_keeps_sensitive_layers_when_the_check_fails(model, tmp_path):
    """When all-int8 misses the bound, the build keeps the sensitive layers in higher
    precision, one step at a time, and records what it kept."""
    meta = ovgraph.build_int8(model, tmp_path / "int8", side=96, min_psnr=1000.0)
    assert meta["not_int8"] == list(ovgraph.FALLBACKS[-1])
    assert set(meta["ranges"]).isdisjoint(meta["not_int8"])
    assert (tmp_path / "int8" / "model.xml").is_file()


def test_int8_artefact_keyed_by_weights(model, artefacts):
    other = load_generator(PROXY_WEIGHTS)
    with torch.no_grad():
        other.out_layer[0].weight.mul_(0.5)
    assert ovgraph.artefact_dir(other.state_dict()) != ovgraph.artefact_dir(model.state_dict())


def test_auto_uses_cached_int8_at_once(model, artefacts):
    runtime.make_backend(model, "openvino-int8")  # cached by now
    auto = runtime.make_backend(model, "auto")
    assert isinstance(auto, runtime.AutoBackend)
    assert auto.ready.is_set() and auto.name == "openvino-int8"


def test_auto_refuses_a_backend_under_the_bound(model, artefacts, monkeypatch):
    monkeypatch.setattr(runtime, "MIN_PSNR", 1000.0)
    auto = runtime.make_backend(model, "auto", background=False)
    assert auto.name == "torch-fp32"
    assert any("not used" in note for note in auto.notes)


def test_auto_serves_before_the_build_finishes(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached here
    gate = threading.Event()
    monkeypatch.setattr(runtime, "_openvino_int8", lambda m: gate.wait() and None)
    monkeypatch.setattr(runtime, "native_bf16", lambda: False)
    auto = runtime.make_backend(model, "auto")
    assert auto.name == "torch-fp32" and not auto.ready.is_set()
    assert auto(_input("chelsea.png", 32)).shape == (1, 3, 21, 32)  # served while "building"
    gate.set()


def test_env_and_flag_force_a_backend(model, monkeypatch, offline_weights, tmp_path, capsys):
    monkeypatch.setenv(runtime.BACKEND_ENV, "torch-fp32")
    be = runtime.make_backend(model)
    assert not isinstance(be, runtime.AutoBackend) and be.name == "torch-fp32"
    with pytest.raises(ValueError, match="Unknown backend"):
        runtime.make_backend(model, "nope")

    from animegan import Stylizer
    from animegan.cli import main

    result = Stylizer().run(photo("chelsea.png"), max_side=64)
    assert "torch-fp32" in result.summary()
    monkeypatch.delenv(runtime.BACKEND_ENV)
    assert main([str(photo("chelsea.png")), "-o", str(tmp_path), "--max-side", "64", "--backend", "torch-fp32",
                 "-v"]) == 0
    assert "backend torch-fp32" in capsys.readouterr().err


def test_threads_follow_available_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert runtime.available_cpus() == 1
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from animegan import runtime; print(runtime.available_cpus())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "1"


def test_openvino_uses_available_cpus(model):
    be = ovgraph.OpenVINOBackend(ovgraph.build(model.state_dict()), "openvino-fp32")
    assert be._compiled.get_property("INFERENCE_NUM_THREADS") == runtime.available_cpus()


def test_two_requests_never_run_at_once(stylizer, monkeypatch):
    active, peak = [0], [0]

    class Slow:
        name = "slow"

        def __call__(self, x):
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            active[0] -= 1
            return x

    monkeypatch.setitem(stylizer._backends, stylizer.style, Slow())
    img = images.decode(photo("chelsea.png")).rgb.resize((32, 32))
    threads = [threading.Thread(target=stylizer.run_array, args=(stylizer.style, img)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_allocator_keeps_big_blocks(model):
    """In a worker thread (as Gradio runs requests), a repeated pass faults almost no
    fresh pages in: the big activations are reused from malloc's heap."""
    assert runtime.ALLOCATOR_TUNED
    be = runtime.make_backend(load_generator(PROXY_WEIGHTS), "torch-fp32")  # sets the allocator for PyTorch
    x = _input("astronaut.png", 256)
    faults = []

    def work():
        for _ in range(3):
            before = _minor_faults()
            be(x)
            faults.append(_minor_faults() - before)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert faults[-1] < 2000, faults  # ~16 000 per pass without the setting


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("name", ["openvino-int8", "torch-fp32"])
def test_no_memory_growth_over_200_requests(model, artefacts, name):
    be = runtime.make_backend(model, name)
    x = _input("coffee.png", 48)
    for _ in range(20):
        be(x)
    start = _rss_mb()
    for _ in range(200):
        be(x)
    assert _rss_mb() - start < 10
