"""What this machine is: the CPU's model and instruction sets, the CPUs this process may
use, and its memory. Read from Linux (/proc, /sys, cgroups), never set: the one owner of
what the process does with these facts is :mod:`animegan.runtime`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The ISA caps oneDNN (ONEDNN_MAX_CPU_ISA) and OpenVINO (OV_CPU_MAX_ISA) take, and the
# CPU flags each one leaves out: a machine limited to AVX2 is profiled as one.
_ABOVE_AVX2 = ("avx512", "avx_vnni", "amx")
ISA_CAPS: dict[str, tuple[str, ...]] = {
    "SSE41": ("avx",) + _ABOVE_AVX2 + ("fma", "f16c"),
    "AVX": ("avx2",) + _ABOVE_AVX2,
    "AVX2": _ABOVE_AVX2,
    "AVX2_VNNI": ("avx512", "amx"),
    "AVX2_VNNI_2": ("avx512", "amx"),
    "AVX512_CORE": ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx"),
    "AVX512_CORE_VNNI": ("avx512_bf16", "amx"),
    "AVX512_CORE_BF16": ("amx",),
}


@dataclass(frozen=True)
class Machine:
    """The CPU (model, flags after any ISA cap), the CPUs this process may use and its memory."""

    cpu: str
    flags: frozenset[str]
    cpus: int
    memory_total: int  # bytes: the machine's RAM, or the cgroup's limit where that is smaller
    memory_available: int  # bytes free for this process when it was read
    isa_cap: str | None = None  # e.g. "AVX2" when ONEDNN_MAX_CPU_ISA / OV_CPU_MAX_ISA limit the ISA

    @classmethod
    def read(cls, isa_cap: str | None = None) -> Machine:
        cap = (isa_cap or "").strip().upper() or None
        flags = cpu_flags()
        if cap in ISA_CAPS:
            flags = {f for f in flags if not f.startswith(ISA_CAPS[cap])}
        total, available = memory()
        return cls(cpu_name(), frozenset(flags), available_cpus(), total, available, cap)

    # -- instruction sets --------------------------------------------------------------------
    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return {"avx512f", "avx512bw", "avx512vl"} <= self.flags

    @property
    def vnni(self) -> bool:
        """int8 dot products in hardware (AVX512-VNNI or AVX-VNNI): int8 convolutions pay off most."""
        return bool({"avx512_vnni", "avx_vnni"} & self.flags)

    @property
    def bf16(self) -> bool:
        """bf16 arithmetic in hardware (AVX512-BF16 or AMX): bf16 is a speed-up, not an emulation."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def isa(self) -> str:
        """The instruction sets that decide speed here, e.g. ``AVX-512 + VNNI`` or ``AVX2``."""
        if self.avx512:
            base = "AVX-512"
        elif self.avx2:
            base = "AVX2"
        else:
            base = "no AVX2"
        extras = [name for name, has in (("VNNI", self.vnni), ("BF16", self.bf16), ("AMX", self.amx)) if has]
        return " + ".join([base, *extras])

    def summary(self) -> str:
        cap = f" (limited to {self.isa_cap})" if self.isa_cap else ""
        return (f"{self.cpu}: {self.isa}{cap}; {self.cpus} CPU(s) usable; "
                f"{self.memory_total / 2**30:.1f} GB memory, {self.memory_available / 2**30:.1f} GB free")


# -- readers ---------------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _cpuinfo(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    return set((_cpuinfo("flags") or "").split())


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for reports; "this CPU" where unknown."""
    return _cpuinfo("model name") or "this CPU"


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _cgroup_limit() -> tuple[int | None, int]:
    """(limit, in use) of this process's memory cgroup in bytes; limit None where there is none."""
    for limit_file, used_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if not text.isdigit() or int(text) >= 1 << 60:  # "max", or cgroup v1's "no limit"
            return None, 0
        try:
            used = int(Path(used_file).read_text().strip())
        except (OSError, ValueError):
            used = 0
        return int(text), used
    return None, 0


def memory() -> tuple[int, int]:
    """(total, available) bytes for this process: RAM and MemAvailable, capped by the cgroup's limit."""
    info = _meminfo()
    total = info.get("MemTotal", 0) or 8 << 30
    available = info.get("MemAvailable", total)
    limit, used = _cgroup_limit()
    if limit is not None:
        total, available = min(total, limit), min(available, max(0, limit - used))
    return total, available


def peak_rss() -> int:
    """This process's peak resident memory so far (VmHWM), in bytes; 0 where unknown."""
    return _status("VmHWM")


def rss() -> int:
    """This process's resident memory now (VmRSS), in bytes; 0 where unknown."""
    return _status("VmRSS")


def _status(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
