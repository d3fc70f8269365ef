"""How ready a static OpenVINO bundle (`smop-edge export --format openvino --static`) is for an NPU, checked as
far as a machine without one allows, and the NPU run itself where one exists:

    python scripts/npu_readiness.py BUNDLE [--json]

1. every input and output of every graph has a static shape, in the manifest and in the OpenVINO model itself
   (an NPU compiles static graphs only);
2. the CPU plugin at f32 reproduces the bundle's self-test tokens (what `smop-edge verify` checks);
3. the compile cache works: each graph compiled twice with a CACHE_DIR, the second time from the cache;
4. on a machine whose OpenVINO lists an NPU: each graph compiled for it and the self-test run on it
   (`smop-edge verify BUNDLE --backend openvino --device NPU` is the same run); elsewhere, says so.
Exit 0 when every check that could run passed."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from smop_edge.runtime.bundle import load_bundle
from smop_edge.runtime.verify import self_test


def graphs(bundle) -> list:
    return [g for s in bundle.stages.values() for g in ([s.graph()] if s.file else s.buckets or [])]


def check(path: str) -> dict:
    import openvino as ov

    bundle = load_bundle(path)
    if bundle.manifest.format != "openvino" or bundle.manifest.static is None:
        raise SystemExit(f"{path}: not a static OpenVINO bundle (export --format openvino --static)")
    core = ov.Core()
    report: dict = {"bundle": str(path), "devices": core.available_devices, "graphs": {}}
    all_static = True
    for g in graphs(bundle):
        model = core.read_model(str(bundle.file(g.file)))
        static = all(p.get_partial_shape().is_static for p in [*model.inputs, *model.outputs]) and all(
            isinstance(d, int) for t in [*g.inputs, *g.outputs] for d in t.shape)
        all_static &= static
        with tempfile.TemporaryDirectory() as cache:
            times = []
            for _ in range(2):
                fresh = ov.Core()
                fresh.set_property({"CACHE_DIR": cache})
                began = time.perf_counter()
                fresh.compile_model(str(bundle.file(g.file)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                times.append(time.perf_counter() - began)
            cached = any(Path(cache).iterdir())
        report["graphs"][g.file] = {"static": static, "compile_s": round(times[0], 3),
                                    "compile_from_cache_s": round(times[1], 3), "cache_written": cached}
    cpu = self_test(path, "openvino")
    report["static"] = all_static
    report["cache"] = all(x["cache_written"] for x in report["graphs"].values())
    report["cpu_f32_self_test"] = cpu.passed
    if any(d.startswith("NPU") for d in core.available_devices):
        report["npu_self_test"] = self_test(path, "openvino", device="NPU").passed
    else:
        report["npu_self_test"] = None  # no NPU here: run this script (or verify --device NPU) on one
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = check(args.bundle)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, g in report["graphs"].items():
            print(f"{name:<28} static {'yes' if g['static'] else 'NO'}; compile {g['compile_s']:.2f} s, from the "
                  f"cache {g['compile_from_cache_s']:.2f} s{'' if g['cache_written'] else ' (NOTHING CACHED)'}")
        print(f"CPU plugin, f32: self-test {'pass' if report['cpu_f32_self_test'] else 'FAIL'}")
        npu = report["npu_self_test"]
        print("NPU: " + ("self-test pass" if npu else "self-test FAIL" if npu is False else
                         f"none here (devices: {', '.join(report['devices'])}); on a machine with one: "
                         f"smop-edge verify {args.bundle} --backend openvino --device NPU"))
    passed = report["static"] and report["cache"] and report["cpu_f32_self_test"] and report["npu_self_test"] is not False
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
