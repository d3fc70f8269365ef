"""What a small board is doing while it runs the model: its name, CPU clocks, temperature and throttling.
A Raspberry Pi slows its cores when it is hot or under-powered, so a timing without these notes cannot be
compared with another; `smop-edge pi --check` and `smop-edge bench` print them. Read from sysfs and,
on a Pi, `vcgencmd`; every field is None where the machine does not say."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

# `vcgencmd get_throttled` bits (Raspberry Pi firmware): now (0-3) and since boot (16-19)
_THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit"}


@dataclass
class BoardInfo:
    model: str  # the device tree's model ("Raspberry Pi 5 Model B Rev 1.0"), else the CPU's name
    machine: str  # aarch64, x86_64
    cores: int
    governor: str | None  # cpufreq governor of cpu0 ("ondemand", "performance")
    mhz_now: float | None  # cpu0's clock now
    mhz_max: float | None  # cpu0's highest clock
    celsius: float | None  # the CPU's temperature
    throttled: list[str] | None  # `vcgencmd get_throttled` decoded: what holds the CPU back now / since boot

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for a report."""
        clock = f"{self.mhz_now:.0f} of {self.mhz_max:.0f} MHz" if self.mhz_now and self.mhz_max else "clock unknown"
        parts = [f"{self.model} ({self.machine}, {self.cores} cores)", clock + (f" ({self.governor})"
                                                                              if self.governor else "")]
        parts.append(f"{self.celsius:.1f} °C" if self.celsius is not None else "temperature unknown")
        if self.throttled is not None:
            parts.append("throttled: " + ", ".join(self.throttled) if self.throttled else "never throttled")
        return "; ".join(parts)

    def warnings(self) -> list[str]:
        """What makes timings on this board not comparable: heat, power, a slow governor."""
        found = []
        if self.celsius is not None and self.celsius >= 80:
            found.append(f"the CPU is at {self.celsius:.0f} °C: a Raspberry Pi slows down from 80 °C (add cooling)")
        found += [f"firmware reports {flag}" for flag in self.throttled or [] if flag.endswith("now")]
        if self.governor == "powersave":
            found.append("the cpufreq governor is powersave: timings will be slow")
        return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _number(path: Path, scale: float) -> float | None:
    text = _read(path)
    try:
        return float(text) / scale if text else None
    except ValueError:
        return None


def _cpu_name(root: Path) -> str:
    for line in (_read(root / "proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or "unknown CPU"


def _temperature(root: Path) -> float | None:
    """The CPU's thermal zone (named cpu-thermal on a Pi, x86_pkg_temp on Intel), else the first one."""
    zones = sorted((root / "sys/class/thermal").glob("thermal_zone*"))
    preferred = [z for z in zones if (_read(z / "type") or "") in ("cpu-thermal", "x86_pkg_temp", "cpu_thermal")]
    for zone in preferred + zones:
        value = _number(zone / "temp", 1000.0)
        if value is not None:
            return value
    return None


def decode_throttled(value: int) -> list[str]:
    """`vcgencmd get_throttled`'s bits as words, e.g. ["under-voltage now", "throttled since boot"]."""
    found = [f"{name} now" for bit, name in _THROTTLE_BITS.items() if value >> bit & 1]
    return found + [f"{name} since boot" for bit, name in _THROTTLE_BITS.items() if value >> (bit + 16) & 1]


def _throttled() -> list[str] | None:
    if not shutil.which("vcgencmd"):
        return None
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        return decode_throttled(int(out.strip().partition("=")[2], 16))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def board_info(root: str | Path = "/") -> BoardInfo:
    """The board as `root` (a filesystem root: "/" here, a copy of a Pi's files in tests) shows it."""
    root = Path(root)
    freq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    model = _read(root / "proc/device-tree/model") or _read(root / "sys/firmware/devicetree/base/model")
    return BoardInfo(model=model or _cpu_name(root), machine=platform.machine(), cores=os.cpu_count() or 1,
                     governor=_read(freq / "scaling_governor"), mhz_now=_number(freq / "scaling_cur_freq", 1000.0),
                     mhz_max=_number(freq / "cpuinfo_max_freq", 1000.0), celsius=_temperature(root),
                     throttled=_throttled() if str(root) == "/" else None)
