"""Speed, memory and fidelity of every backend against the reference path, in one run.

    python benchmarks/bench_speed.py              # full run (about 5-10 minutes on 2 vCPU)
    python benchmarks/bench_speed.py --quick      # 256 and 512 only, 3 repeats
    python benchmarks/bench_speed.py --isa AVX2   # the same machine limited to AVX2 (another CPU kind)

The reference is the way the published demo runs the generator: PyTorch float32, eager,
NCHW, default settings (glibc malloc untouched), in its own fresh process that does not
import animegan (the demo's model and its conversions are restated below). Every
backend then runs in its own fresh process too, so each peak RSS is that of a whole
process. Times are medians of --repeats runs after one warm-up, on --threads threads.
Fidelity: every backend's output on the real photos (examples/, proxy weights) against
the reference's float32 output, compared as the 8-bit images a person sees. Live: frames
per second of the library's live loop (animegan.live.LiveStylizer, 256 px frames, one after
the other) on auto's choice.

``--isa AVX2`` runs every process (the reference too) with oneDNN's ONEDNN_MAX_CPU_ISA,
OpenVINO's OV_CPU_MAX_ISA and ATen's ATEN_CPU_CAPABILITY set, so an AVX-512 machine runs
as an AVX2-only one; the run checks the cap took effect (OpenVINO's per-layer profile: no
kernel left on AVX-512; PyTorch's CPU capability) and says so in the results.
Writes benchmarks/results/speed.md (the machine as it is) or speed-<isa>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "tests" / "data" / "proxy_toon.pt"
PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"]
BACKENDS = ["torch-fp32", "torch-bf16", "openvino-f32", "openvino-int8"]
ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA", "ATEN_CPU_CAPABILITY")


def isa_env(isa: str | None) -> dict[str, str]:
    """This process's environment for the workers, with the ISA cap (or without any)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ISA_VARIABLES}
    if isa:
        env.update(ONEDNN_MAX_CPU_ISA=isa, OV_CPU_MAX_ISA=isa, ATEN_CPU_CAPABILITY=isa.lower())
    return env

# The reference: the published demo's generator and conversions, restated so that the
# reference process imports nothing from animegan (and so gets no allocator setting).
REFERENCE = r'''
import torch, torch.nn as nn, torch.nn.functional as F

class ConvNormLReLU(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, padding=1, pad_mode="reflect", groups=1, bias=False):
        pad_layer = {"zero": nn.ZeroPad2d, "same": nn.ReplicationPad2d, "reflect": nn.ReflectionPad2d}
        super().__init__(
            pad_layer[pad_mode](padding),
            nn.Conv2d(in_ch, out_ch, kernel_size=kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True))

class InvertedResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, expansion_ratio=2):
        super().__init__()
        self.use_res_connect = in_ch == out_ch
        bottleneck = int(round(in_ch * expansion_ratio))
        layers = []
        if expansion_ratio != 1:
            layers.append(ConvNormLReLU(in_ch, bottleneck, kernel_size=1, padding=0))
        layers.append(ConvNormLReLU(bottleneck, bottleneck, groups=bottleneck, bias=True))
        layers.append(nn.Conv2d(bottleneck, out_ch, kernel_size=1, padding=0, bias=False))
        layers.append(nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, input):
        out = self.layers(input)
        return input + out if self.use_res_connect else out

class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.block_a = nn.Sequential(ConvNormLReLU(3, 32, kernel_size=7, padding=3),
                                     ConvNormLReLU(32, 64, stride=2, padding=(0, 1, 0, 1)), ConvNormLReLU(64, 64))
        self.block_b = nn.Sequential(ConvNormLReLU(64, 128, stride=2, padding=(0, 1, 0, 1)), ConvNormLReLU(128, 128))
        self.block_c = nn.Sequential(ConvNormLReLU(128, 128), InvertedResBlock(128, 256, 2),
                                     InvertedResBlock(256, 256, 2), InvertedResBlock(256, 256, 2),
                                     InvertedResBlock(256, 256, 2), ConvNormLReLU(256, 128))
        self.block_d = nn.Sequential(ConvNormLReLU(128, 128), ConvNormLReLU(128, 128))
        self.block_e = nn.Sequential(ConvNormLReLU(128, 64), ConvNormLReLU(64, 64),
                                     ConvNormLReLU(64, 32, kernel_size=7, padding=3))
        self.out_layer = nn.Sequential(nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0, bias=False), nn.Tanh())

    def forward(self, input, align_corners=True):
        out = self.block_a(input)
        half_size = out.size()[-2:]
        out = self.block_b(out)
        out = self.block_c(out)
        out = F.interpolate(out, half_size, mode="bilinear", align_corners=align_corners)
        out = self.block_d(out)
        out = F.interpolate(out, input.size()[-2:], mode="bilinear", align_corners=align_corners)
        out = self.block_e(out)
        return self.out_layer(out)

def load(weights, threads):
    torch.set_num_threads(threads)
    net = Generator()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    def run(x):  # the demo: with torch.no_grad(): out = net(to_tensor(img).unsqueeze(0) * 2 - 1)
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()
    return run
'''


def to_input(img: Image.Image) -> np.ndarray:
    """The demo's conversion: to_tensor(img) * 2 - 1, as 1 x 3 x H x W float32."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((arr * np.float32(2) - np.float32(1)).transpose(2, 0, 1)[None])


def to_pixels(out: np.ndarray) -> np.ndarray:
    """The demo's conversion back: (x * 0.5 + 0.5).clip(0, 1) * 255, truncated to uint8."""
    return ((out[0] * np.float32(0.5) + np.float32(0.5)).clip(0, 1) * np.float32(255)).astype(np.uint8)


def make_inputs(folder: Path, quick: bool) -> dict[str, str]:
    """Timing inputs (real photos at the sizes measured) and the fidelity photos, as .npy."""
    examples = ROOT / "examples"
    astro = Image.open(examples / "astronaut.png").convert("RGB")
    coffee = Image.open(examples / "coffee.png").convert("RGB")
    w, h = coffee.size  # 600 x 400: centre crop to 4:3, then the default max side
    crop = coffee.crop(((w - h * 4 // 3) // 2, 0, (w - h * 4 // 3) // 2 + h * 4 // 3, h))
    sizes = {"256²": astro.resize((256, 256), Image.LANCZOS), "512²": astro}
    if not quick:
        sizes["1024×768 (4:3)"] = crop.resize((1024, 768), Image.LANCZOS)
        sizes["1024²"] = astro.resize((1024, 1024), Image.LANCZOS)
    paths = {}
    for label, img in sizes.items():
        paths[f"time:{label}"] = str(folder / f"time_{len(paths)}.npy")
        np.save(paths[f"time:{label}"], to_input(img))
    for name in PHOTOS:
        paths[f"photo:{name}"] = str(folder / f"photo_{name}.npy")
        np.save(paths[f"photo:{name}"], to_input(Image.open(examples / name)))
    return paths


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(backend: str, inputs: dict[str, str], out_dir: Path, threads: int) -> None:
    """Runs in a fresh process: loads one backend, then obeys the parent line by line
    ("time KEY": one timed run; "photos": save the fidelity outputs; "quit")."""
    start = time.perf_counter()
    if backend == "reference":
        namespace: dict = {}
        exec(REFERENCE, namespace)
        run = namespace["load"](str(WEIGHTS), threads)
        name = "reference"
    else:
        sys.path.insert(0, str(ROOT))
        from dataclasses import replace

        from animegan import Stylizer, runtime
        from animegan.settings import Settings

        rt = runtime.start(replace(Settings.from_env(), threads=threads))
        stylizer = Stylizer(runtime=rt, backend=backend, weights_file=str(WEIGHTS), wait_for_fast=True)
        be = stylizer.backend()
        run, name = be, be.name
    reply({"backend": name, "load_s": time.perf_counter() - start})
    cache: dict[str, np.ndarray] = {}
    for line in sys.stdin:
        cmd, _, key = line.strip().partition(" ")
        if cmd == "time":
            x = cache.setdefault(key, np.load(inputs[key]))
            t = time.perf_counter()
            run(x)
            reply({"s": time.perf_counter() - t, "rss_mb": peak_rss_mb()})
        elif cmd == "live":
            from animegan.live import LiveStylizer

            live = LiveStylizer(stylizer, time_limit=None)
            frame = Image.open(ROOT / "examples" / "astronaut.png").convert("RGB").resize((640, 480))
            session, _ = live.process(None, frame, side=256)  # warm-up
            t = time.perf_counter()
            for _ in range(int(key or 20)):
                session, result = live.process(session, frame, side=256)
            reply({"fps": int(key or 20) / (time.perf_counter() - t), "size": list(result.image.size)})
        elif cmd == "photos":
            cache.clear()
            for k, path in inputs.items():
                if k.startswith("photo:"):
                    np.save(out_dir / f"{backend}_{k[6:]}.npy", to_pixels(run(np.load(path))))
            reply({"done": True})
        else:
            return


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, backend: str, inputs: dict[str, str], out_dir: Path, threads: int, isa: str | None) -> None:
        env = isa_env(isa)  # glibc's malloc at its default settings; the ISA cap, if any
        env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, __file__, "--worker", backend, "--inputs", json.dumps(inputs),
               "--out", str(out_dir), "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.backend = backend
        self.info = self.ask(None)

    def ask(self, command: str | None) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.backend} worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def measure(backends: list[str], inputs: dict[str, str], out_dir: Path, repeats: int, threads: int,
            isa: str | None) -> dict:
    """All processes stay alive and take turns, run by run, so that the load of a
    shared machine falls on every backend alike (ratios are fair within one run)."""
    workers, rows = [], {}
    for backend in backends:
        try:
            workers.append(Worker(backend, inputs, out_dir, threads, isa))
        except RuntimeError as exc:
            rows[backend] = {"backend": backend, "error": [str(exc)]}
    for w in workers:
        rows[w.backend] = {**w.info, "times": {}, "rss_mb": {}}
    for key in [k for k in inputs if k.startswith("time:")]:
        print(f"timing {key[5:]} ...", file=sys.stderr, flush=True)
        for w in workers:
            w.ask(f"time {key}")  # warm-up
        for _ in range(repeats):
            for w in workers:
                r = w.ask(f"time {key}")
                rows[w.backend]["times"].setdefault(key[5:], []).append(r["s"])
                rows[w.backend]["rss_mb"][key[5:]] = r["rss_mb"]
    print("live frames ...", file=sys.stderr, flush=True)
    for w in workers:
        if w.backend == "auto":
            rows[w.backend]["live_fps"] = w.ask("live 20")["fps"]
    for w in workers:
        w.ask("photos")
        w.close()
    return rows


def cold_start(folder: Path, threads: int, isa: str | None) -> float:
    """From ``python app.py`` starting to the first 512² result back through its API,
    weights and the int8 artefact already cached (as on a Space after its first start)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from app_helpers import AppServer, app_env
    from gradio_client import Client, handle_file

    from animegan import STYLES
    from animegan.settings import Settings

    wdir = folder / "cold_weights"
    wdir.mkdir(exist_ok=True)
    for name in STYLES:
        (wdir / f"{name}.pt").write_bytes(WEIGHTS.read_bytes())
    photo = folder / "cold_512.png"
    Image.open(ROOT / "examples" / "astronaut.png").convert("RGB").save(photo)
    # the same Hub cache the int8 worker filled above, so the artefact is found there
    env = app_env(wdir, folder / "cold_home", HF_HUB_CACHE=str(Settings.from_env().hub_cache),
                  OMP_NUM_THREADS=str(threads), **{k: v for k, v in isa_env(isa).items() if k in ISA_VARIABLES})
    env.pop("ANIMEGAN_BACKEND", None)
    server = AppServer(env, folder / "cold_app.log")
    start = time.perf_counter()
    try:
        server.start()
        Client(server.url, verbose=False).predict(handle_file(str(photo)), "face_paint_512_v2", "off",
                                                  api_name="/stylize")
        return time.perf_counter() - start
    finally:
        server.stop()


def fidelity(out_dir: Path, backend: str) -> tuple[float, int]:
    worst_psnr, worst_err = float("inf"), 0
    for name in PHOTOS:
        ref = np.load(out_dir / f"reference_{name}.npy").astype(np.float64)
        out = np.load(out_dir / f"{backend}_{name}.npy").astype(np.float64)
        mse = float(np.mean((ref - out) ** 2))
        worst_psnr = min(worst_psnr, float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))
        worst_err = max(worst_err, int(np.abs(ref - out).max()))
    return worst_psnr, worst_err


def default_backend(isa: str | None) -> tuple[str, str, str]:
    """What ``auto`` picks here (measured in a subprocess, as the command line's first run
    does: the int8 model built once if it is not cached yet), how long the build took, and
    the check that the ISA cap took effect (OpenVINO's per-layer profile, PyTorch's capability)."""
    code = ("import json, collections, numpy as np; from animegan import backends, runtime; "
            "from animegan.backends import openvino; from animegan.weights import load_generator; "
            f"m = load_generator({str(WEIGHTS)!r}); rt = runtime.start(runtime.get().settings); "
            "auto = backends.make_backend(m, 'auto', rt, background=False); print(auto.name); "
            "meta = json.loads((openvino.artefact_dir(m, rt) / 'meta.json').read_text()); "
            "print(meta['build_seconds'], meta['calibration_side']); "
            "c = rt.openvino().compile_model(openvino.artefact_dir(m, rt) / 'model.xml', 'CPU', "
            "{'PERF_COUNT': True, 'INFERENCE_NUM_THREADS': 1}); r = c.create_infer_request(); "
            "r.infer({0: np.zeros((1, 3, 128, 128), np.float32)}); "
            "kinds = [p.exec_type for p in r.profiling_info if p.status.name == 'EXECUTED']; "
            "import torch; print(sum('avx512' in k for k in kinds), len(kinds), "
            "torch.backends.cpu.get_cpu_capability(), rt.machine.isa.replace(' ', '_'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env=dict(isa_env(isa), PYTHONPATH=str(ROOT)))
    lines = out.stdout.strip().splitlines()
    name, (seconds, side), (on512, layers, capability, profile) = lines[-3], lines[-2].split(), lines[-1].split()
    check = (f"the machine as profiled by animegan: {profile.replace('_', ' ')}; the int8 model's per-layer "
             f"profile: {on512} of {layers} executed layers on AVX-512 kernels; PyTorch's CPU capability: "
             f"{capability}")
    size = "their own size" if side == "None" else f"{side} px"
    return name, f"{seconds} s (calibration on the 5 shipped photos at {size} + fidelity check), once per " \
                 "weights and machine", check


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256² and 512² only, 3 repeats")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per size, after a warm-up")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--isa", default=None, help="limit the ISA of every process, e.g. AVX2 (see above)")
    p.add_argument("--output", default=None, help="default: benchmarks/results/speed.md, or speed-<isa>.md")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.inputs), Path(args.out), args.threads)
        return
    repeats = 3 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = make_inputs(folder, args.quick)
        load_before = os.getloadavg()[0]
        os.environ["HF_HUB_CACHE"] = str(folder / "hub")  # a fresh cache: auto measures and builds here
        auto, build, check = default_backend(args.isa)  # also builds the int8 artefact once, before any timing
        rows = measure(["reference", *args.backends.split(","), "auto"], inputs, folder, repeats, args.threads,
                       args.isa)
        cold = cold_start(folder, args.threads, args.isa)
        load_after = os.getloadavg()[0]
        table = render(rows, folder, auto, cold, repeats, args.threads, (load_before, load_after), build, args.isa,
                       check)
    print(table)
    output = Path(args.output or ROOT / "benchmarks" / "results" / (f"speed-{args.isa.lower()}.md" if args.isa
                                                                     else "speed.md"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    print(f"written to {output}", file=sys.stderr)


def render(rows: dict, folder: Path, auto: str, cold: float, repeats: int, threads: int, load: tuple,
           build: str, isa: str | None, check: str) -> str:
    ref = rows["reference"]
    labels = list(ref["times"])
    ref_med = {k: float(np.median(v)) for k, v in ref["times"].items()}
    big = labels[-1]
    head = ["backend", *[f"{k} s (x ref)" for k in labels], f"peak RSS at {big}", "PSNR vs ref (worst photo)",
            "max error (8-bit)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for backend, r in rows.items():
        if "error" in r:
            lines.append(f"| {backend} | unavailable: {' '.join(r['error'])[:120]} |")
            continue
        cells = []
        for k in labels:
            med = float(np.median(r["times"][k]))
            cells.append(f"{med:.3f}" + ("" if backend == "reference" else f" ({ref_med[k] / med:.1f}x)"))
        if backend == "reference":
            fid = ["—", "—"]
            name = "reference: demo, fp32 eager NCHW, fresh process, default malloc"
        else:
            psnr, err = fidelity(folder, backend)
            fid = ["exact" if psnr == float("inf") else f"{psnr:.1f} dB", str(err)]
            name = f"**default (auto): {r['backend']}**" if backend == "auto" else backend
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['rss_mb'][big]:.0f} MB | " + " | ".join(fid) + " |")
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.processor())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info if ln.startswith("flags")), []))
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    import openvino
    import torch

    command = " ".join(["python", "benchmarks/bench_speed.py", *sys.argv[1:]])
    ref_live = 1 / float(np.median(ref["times"]["256²"])) if "256²" in ref["times"] else float("nan")
    live = rows.get("auto", {}).get("live_fps")
    return "\n".join([
        "# Speed, memory and fidelity of every backend against the reference"
        + (f" (limited to {isa})" if isa else ""),
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {cpu}, {os.cpu_count()} CPUs (flags: {' '.join(shown) or 'no AVX2'}), {threads} threads; "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__}, openvino {openvino.__version__.split('-')[0]}. "
        f"Median of {repeats} runs after a warm-up; proxy weights; load average {load[0]:.1f} -> {load[1]:.1f} "
        "(the machine is shared: compare ratios from one run).",
        "",
        (f"ISA cap: every process ran with ONEDNN_MAX_CPU_ISA={isa}, OV_CPU_MAX_ISA={isa}, "
         f"ATEN_CPU_CAPABILITY={isa.lower()}; check: {check}." if isa else f"No ISA cap; {check}."),
        "",
        *lines,
        "",
        f"Live frames at 256 px through the library's loop (LiveStylizer, one after the other) on the default "
        f"backend: **{live:.1f} frames/s** (the reference's 256² pass: {ref_live:.1f}/s)." if live else "",
        "",
        f"Cold start (weights and int8 artefact cached; from `python app.py` starting to the first 512² result "
        f"back through its `/stylize` API, auto backend): {cold:.1f} s. "
        "Choosing the backend and building the int8 artefact (the first run on a machine, then cached): "
        + build + ".",
        "",
    ])


if __name__ == "__main__":
    main()
