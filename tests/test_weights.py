"""Safe loading of checkpoints, and downloads through huggingface_hub against a local Hub."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from contextlib import contextmanager

import pytest
import torch
from conftest import PROXY_WEIGHTS
from hub_server import FakeHub
from safetensors.torch import save_file

from animegan import Generator, WeightsError, register_style
from animegan.styles import STYLES
from animegan.weights import NotDownloaded, load_generator, resolve

PROXY_BYTES = PROXY_WEIGHTS.read_bytes()


def proxy_state() -> OrderedDict:
    return torch.load(PROXY_WEIGHTS, weights_only=True)


# --- loading -------------------------------------------------------------------------
def test_loads_published_pickle_and_safetensors_copy_identically(tmp_path):
    st = tmp_path / "copy.safetensors"
    save_file(dict(proxy_state()), str(st))
    a, b = load_generator(PROXY_WEIGHTS), load_generator(st)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not a.training


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = proxy_state()
    del sd["block_e.2.1.weight"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as info:
        load_generator(tmp_path / "bad.pt")
    msg = str(info.value)
    assert "1 missing keys: block_e.2.1.weight" in msg and "1 unexpected keys: extra.weight" in msg


def test_wrong_shapes_are_named(tmp_path):
    sd = proxy_state()
    sd["out_layer.0.weight"] = torch.zeros(3, 64, 1, 1)
    torch.save(sd, tmp_path / "bad.pt")
    expected = r"wrong shapes: out_layer.0.weight: \(3, 64, 1, 1\) \(expected \(3, 32, 1, 1\)\)"
    with pytest.raises(WeightsError, match=expected):
        load_generator(tmp_path / "bad.pt")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_random_bytes_are_not_a_checkpoint(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="not a"):
        load_generator(path)


def test_a_state_dict_of_something_else(tmp_path):
    torch.save({"weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an AnimeGANv2 generator checkpoint: 77 missing keys"):
        load_generator(tmp_path / "other.pt")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create a file when unpickled


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"block_a.0.1.weight": _Exploit(str(marker))}, path)
    with pytest.raises(WeightsError, match="Refused to load"):
        load_generator(path)
    assert not marker.exists()
    # and a bare pickle (not torch's zip format) too
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(WeightsError):
        load_generator(path)
    assert not marker.exists()


# --- resolving and downloading ---------------------------------------------------------
def here():
    """A runtime for the environment as the test has set it (the process's reads it once)."""
    from animegan import runtime
    from animegan.settings import Settings

    return runtime.get(Settings.from_env())

@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local Hub on 127.0.0.1 with the proxy weights as face_paint_512_v2, and an empty cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ANIMEGAN_WEIGHTS_DIR", raising=False)
    server = FakeHub()
    server.add_hub_file("akhaliq/AnimeGANv2-pytorch", "face_paint_512_v2.pt", PROXY_BYTES)
    with server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_download_once_then_cache_with_server_stopped(hub, monkeypatch, tmp_path):
    path = resolve("face_paint_512_v2", here())
    assert path.read_bytes() == PROXY_BYTES
    assert str(path).startswith(str(tmp_path / "hf" / "hub"))  # huggingface_hub's cache, under HF_HOME
    assert hub.downloads() >= 1
    hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert resolve("face_paint_512_v2", here()) == path


def test_offline_mode_uses_the_cache(hub, monkeypatch):
    path = resolve("face_paint_512_v2", here())
    before = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("face_paint_512_v2", here()) == path
    assert len(hub.requests) == before  # not even a HEAD


def test_offline_mode_without_cache_names_the_override(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        resolve("face_paint_512_v2", here())
    msg = str(info.value)
    assert "HF_HUB_OFFLINE is set" in msg and "ANIMEGAN_WEIGHTS_DIR" in msg
    assert "face_paint_512_v2.pt (or .safetensors)" in msg
    assert isinstance(info.value, NotDownloaded)  # the app says this once for all such styles
    assert hub.requests == []


def test_an_unreachable_hub_is_asked_once_and_onnx_styles_ask_for_their_onnx_file(tmp_path, monkeypatch):
    """Offline without HF_HUB_OFFLINE: nothing answers at the endpoint. The host is asked
    once (no retries), and the way around names the file an ONNX style needs."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ANIMEGAN_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert STYLES["shinkai"].is_onnx and not STYLES["shinkai"].url  # the Hub is its only source
    with pytest.raises(NotDownloaded) as info:
        resolve("shinkai", here())
    msg = str(info.value)
    assert "did not answer; not retried" in msg
    assert "as shinkai.onnx and set ANIMEGAN_WEIGHTS_DIR" in msg and "shinkai.pt" not in msg
    assert "local_files_only" not in msg  # huggingface_hub's advice is for developers, not shown


@contextmanager
def user_style(name, **source):
    register_style(name, **source)
    try:
        yield name
    finally:
        STYLES.pop(name)


def test_404_is_a_clear_error(hub):
    with user_style("missing_style", repo_id="akhaliq/AnimeGANv2-pytorch", filename="nope.pt"):
        with pytest.raises(WeightsError) as info:
            resolve("missing_style", here())
    msg = str(info.value)
    assert "missing_style" in msg and "404" in msg and "ANIMEGAN_WEIGHTS_DIR" in msg


@pytest.mark.slow  # waits out huggingface_hub's retry back-off (about 23 s of sleeping)
def test_500_is_a_clear_error(hub):
    hub.status = 500  # huggingface_hub retries 5xx with backoff (about 20 s), then gives up
    with user_style("broken_hub", repo_id="akhaliq/AnimeGANv2-pytorch", filename="face_paint_512_v2.pt"):
        with pytest.raises(WeightsError) as info:
            resolve("broken_hub", here())
    assert "500" in str(info.value) and "nothing is cached" in str(info.value)


def test_url_fallback_downloads_once(hub, caplog):
    url = hub.add_url_file("/bryandlee/animegan2-pytorch/raw/main/weights/paprika.pt", PROXY_BYTES)
    with user_style("url_style", url=url), caplog.at_level("WARNING", logger="animegan"):
        first = resolve("url_style", here())
        n = hub.downloads()
        assert resolve("url_style", here()) == first and hub.downloads() == n
        assert first.read_bytes() == PROXY_BYTES
    # no sha256 to check it against: said once per process, not on every use
    assert [r.getMessage() for r in caplog.records].count(
        f"weights for url_style from {url} are not pinned (no sha256 in the style registry): not checked") == 1


def test_weights_dir_replaces_the_download(tmp_path, monkeypatch):
    save_file(dict(proxy_state()), str(tmp_path / "paprika.safetensors"))
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert resolve("paprika", here()) == tmp_path / "paprika.safetensors"
    assert isinstance(load_generator(resolve("paprika", here())), Generator)


def test_a_user_style_from_a_local_file(tmp_path):
    with user_style("mine", path=PROXY_WEIGHTS, title="Mine"):
        assert resolve("mine", here()) == PROXY_WEIGHTS
    with pytest.raises(ValueError, match="needs a local path"):
        register_style("nothing")


# -- pinned weights (issue 11, item 7) --------------------------------------------------------
def test_a_url_file_that_is_not_the_pinned_one_is_refused_and_not_kept(hub):
    import hashlib

    from animegan.files import sha256_file as file_sha256

    url = hub.add_url_file("/somewhere/weights/pinned.pt", PROXY_BYTES)
    good = hashlib.sha256(PROXY_BYTES).hexdigest()
    with user_style("pinned_ok", url=url, sha256=good):
        path = resolve("pinned_ok", here())
        assert file_sha256(path) == good
        path.write_bytes(PROXY_BYTES[:-10] + b"0123456789")  # the cached copy changed on disk
        assert resolve("pinned_ok", here()).read_bytes() == PROXY_BYTES  # fetched again, checked
    with user_style("pinned_bad", url=url, sha256="0" * 64):
        with pytest.raises(WeightsError, match="not the pinned one"):
            resolve("pinned_bad", here())
        assert not list(path.parent.parent.glob("*/pinned.pt*")) or all(
            p.read_bytes() == PROXY_BYTES for p in path.parent.parent.glob("*/pinned.pt*"))


def test_every_published_style_is_pinned_or_says_it_is_not():
    for style in STYLES.values():
        if style.repo_id and style.preload:
            assert style.revision and len(style.revision) == 40, style.name  # a commit, not a branch
        elif style.repo_id:  # no commit could be verified: the registry says so (not preloaded, logged)
            assert style.revision is None or len(style.revision) == 40, style.name
        if style.url:
            assert "sha256" in {f for f in type(style).__dataclass_fields__}
            assert style.sha256 is None or len(style.sha256) == 64, style.name


def test_a_loaded_style_does_not_wait_behind_another_styles_download(hub, tmp_path):
    """Issue 11, item 9: the model-loading lock is not held during a download."""
    import threading
    import time

    from animegan import Stylizer
    from animegan.settings import Settings

    url = hub.add_url_file("/slow/weights/slow.pt", PROXY_BYTES)
    hub.delay = 3.0
    stylizer = Stylizer(settings=Settings(backend="torch-fp32", hub_cache=tmp_path / "cache"),
                        weights_file=PROXY_WEIGHTS)
    stylizer.backend()
    with user_style("slow_style", url=url):
        slow = threading.Thread(target=stylizer.backend, args=("slow_style",), daemon=True)
        slow.start()
        deadline = time.monotonic() + 5
        while hub.gets_started == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        stylizer.backend()
        waited = time.perf_counter() - start
        assert slow.is_alive()  # still downloading
        slow.join(10)
    assert waited < 0.5, f"waited {waited:.1f} s behind another style's download"
    assert stylizer.is_loaded("slow_style")
