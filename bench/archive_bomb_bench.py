#!/usr/bin/env python
"""How fast the worker's extraction refuses a real zip bomb: one member that inflates to 9 GiB of zeros (a ~9 MB
archive, its sizes declared honestly in ZIP64 records). The worker reads the central directory by the inspection's
rules and refuses from the declared total before inflating anything, so nothing reaches the disk.

    PY=$(bin/venv-path)/bin/python
    $PY bench/archive_bomb_bench.py               # 9 GiB, in a temporary directory
    $PY bench/archive_bomb_bench.py --gib 20
    $PY bench/archive_bomb_bench.py --java        # and Java's inspection on the same file (bin/trellis2-lora inspect)

The deflate stream is built from one compressed MiB repeated (each cut with a full flush, so every MiB compresses
to the same bytes), which makes a 9 GiB bomb in seconds instead of compressing 9 GiB.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch-containers" / "worker" / "src"))

from trellis2_worker.errors import InputError  # noqa: E402
from trellis2_worker.ingest.archive import extract_zip  # noqa: E402

MIB = 1 << 20


def write_bomb(path: Path, gib: int) -> int:
    chunk = b"\0" * MIB
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)
    n = gib * 1024
    size = n * MIB
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
    comp = len(block) + (n - 1) * len(repeat) + len(end)
    name = b"zeros.bin"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0x800, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                            len(name), 20) + name + struct.pack("<HHQQ", 1, 16, size, comp))
        f.write(block)
        for _ in range(n - 1):
            f.write(repeat)
        f.write(end)
        cd_offset = f.tell()
        extra = struct.pack("<HHQQQ", 1, 24, size, comp, 0)
        cen = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 45, 45, 0x800, 8, 0, 0x21, crc, 0xFFFFFFFF,
                          0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0o100644 << 16, 0xFFFFFFFF) + name + extra
        f.write(cen)
        z64 = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(cen), cd_offset))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, default=9)
    parser.add_argument("--java", action="store_true", help="time bin/trellis2-lora inspect on it too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bomb-bench-") as tmp:
        bomb = Path(tmp) / "bomb.zip"
        t = time.perf_counter()
        inflated = write_bomb(bomb, args.gib)
        print(f"bomb: {bomb.stat().st_size / MIB:.1f} MiB on disk, {inflated / (1 << 30):.0f} GiB inflated "
              f"(built in {time.perf_counter() - t:.1f} s)")
        dest = Path(tmp) / "out"
        t = time.perf_counter()
        try:
            extract_zip(bomb, dest)
            print("NOT refused")
            return 1
        except InputError as exc:
            seconds, why = time.perf_counter() - t, str(exc)
        written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) if dest.exists() else 0
        print(f"worker extract_zip refused it in {seconds * 1000:.1f} ms, {written} bytes written: {why}")
        if args.java:
            cli = Path(__file__).resolve().parents[1] / "bin" / "trellis2-lora"
            t = time.perf_counter()
            run = subprocess.run([str(cli), "inspect", str(bomb)], capture_output=True, text=True)
            print(f"java inspect: exit {run.returncode} in {time.perf_counter() - t:.2f} s (JVM start included): "
                  f"{(run.stdout + run.stderr).strip().splitlines()[-1] if (run.stdout + run.stderr).strip() else ''}")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
