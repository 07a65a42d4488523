"""What ``animegan info`` prints and the app's settings footer shows in short: the machine
profile, the backends and whether each runs here, what is cached, and the memory budget."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from .backends import BACKENDS
from .backends.artefacts import source_hash
from .runtime import Runtime
from .styles import visible_styles


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def backend_status(rt: Runtime) -> dict[str, str]:
    """Backend name -> whether it runs here, and why not."""
    ov, ort = _version("openvino"), _version("onnxruntime")
    no_bf16 = ("no: this CPU has no native bf16 (AVX512-BF16 or AMX)" if not rt.machine.bf16
               else "no: turned off (ANIMEGAN_NO_BF16)")
    out = {}
    for name in BACKENDS:
        if name.startswith("torch"):
            out[name] = "runs here" if name != "torch-bf16" or rt.native_bf16 else no_bf16
        elif name.startswith("openvino"):
            if ov is None:
                out[name] = "no: the openvino package is not installed"
            elif name == "openvino-bf16" and not rt.native_bf16:
                out[name] = no_bf16
            else:
                int8 = " (int8 with VNNI)" if name == "openvino-int8" and rt.machine.vnni else ""
                out[name] = f"runs here{int8}, OpenVINO {ov}"
        else:
            out[name] = f"runs here (ONNX styles only), ONNX Runtime {ort}" if ort else "no: not installed"
    return out


def cached(rt: Runtime) -> list[str]:
    """One line per generator with artefacts: its style (where its weights are here), the
    backend auto chose and the int8 model's figures."""
    from .weights import load_model, local_weights

    folder = rt.artefacts
    if not folder.is_dir():
        return []
    names: dict[str, str] = {}
    for name, style in visible_styles(False).items():
        path = local_weights(style, rt)
        if path is None or path.is_dir():
            continue
        try:
            names[source_hash(load_model(path, style, rt))] = name
        except Exception:  # an unreadable file: its artefacts show by hash
            continue
    lines = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "thumbnails"):
        parts = []
        for choice in sorted(entry.glob("choice-*.json")):
            try:
                data = json.loads(choice.read_text())
            except (OSError, ValueError):
                continue
            times = ", ".join(f"{n} {m['seconds']:.2f} s" for n, m in (data.get("measured") or {}).items()
                              if isinstance(m, dict) and m.get("seconds"))
            parts.append(f"chose {data.get('backend')} on {data.get('machine', '?').split(' | ')[0]}"
                         + (f" ({times})" if times else ""))
        for int8 in sorted(entry.glob("openvino-int8-*")):
            try:
                meta = json.loads((int8 / "meta.json").read_text())
                parts.append(f"int8 model {meta['min_psnr']:.1f} dB from float32, built in {meta['build_seconds']} s")
            except (OSError, ValueError, KeyError):
                parts.append(f"int8 model {int8.name} (unreadable meta.json: rebuilt on use)")
        if parts:
            lines.append(f"{names.get(entry.name, entry.name[:12])}: " + "; ".join(parts))
    thumbs = len(list((folder / "thumbnails").glob("*.png"))) if (folder / "thumbnails").is_dir() else 0
    if thumbs:
        lines.append(f"{thumbs} gallery thumbnail(s)")
    return lines


def describe(rt: Runtime) -> str:
    m = rt.machine
    budget_source = "ANIMEGAN_MEMORY_BUDGET" if rt.settings.memory_budget else "a quarter of the machine's"
    lines = [
        "Machine",
        f"  CPU:               {m.cpu}",
        f"  instruction sets:  {m.isa}" + (f" (limited to {m.isa_cap} by ONEDNN_MAX_CPU_ISA / OV_CPU_MAX_ISA)"
                                          if m.isa_cap else ""),
        f"  CPUs usable:       {m.cpus} (threads per pass: {rt.threads})",
        f"  memory:            {m.memory_total / 2**30:.1f} GB, {m.memory_available / 2**30:.1f} GB free",
        f"  memory budget:     {rt.memory_budget / 2**30:.1f} GB ({budget_source}); bigger pictures go in tiles",
        "",
        "Backends (auto takes the fastest of those that run here, measured once per machine)",
    ]
    lines += [f"  {name:15} {status}" for name, status in backend_status(rt).items()]
    lines += ["", f"Cached in {rt.artefacts}"]
    lines += [f"  {line}" for line in cached(rt)] or ["  nothing yet (animegan prepare builds the fastest backend)"]
    lines += ["", f"Hub: {rt.hub.endpoint or 'huggingface.co'}{' (offline)' if rt.hub.offline else ''}, "
                  f"cache {Path(rt.hub.cache)}"]
    return "\n".join(lines)


def footer(rt: Runtime, backend: str | None = None) -> str:
    """The app's settings footer, in short."""
    m = rt.machine
    serving = f"; serving on {backend}" if backend else ""
    return (f"{m.cpu} ({m.isa}), {rt.threads} thread(s); memory budget {rt.memory_budget / 2**30:.1f} GB"
            f"{serving}")
