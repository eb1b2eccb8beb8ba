"""Carry onnxruntime-gpu to a lent GPU machine that has no package registry, in parts.

The wheel is ~255 MB; one device call carries at most 64 MiB of working tree, and a machine keeps its /tmp
only while it stays warm (~30 s after a call). So:

  python bench/device/ort_gpu_carry.py pack WHEEL --sm 90 --out .ortgpu      # here: slim, compress, split
  python bench/device/ort_gpu_carry.py stash .ortgpu                         # there, once per call: copy the
                                                                             # parts that travelled to /tmp
  python bench/device/ort_gpu_carry.py unpack --target /tmp/site             # there: check, reassemble, extract

Slimming: libonnxruntime_providers_cuda.so holds one fatbin container per compilation unit, each with an ELF
cubin per GPU architecture (sm_75 ... sm_120, 218 MB of its 284 MB). A cubin runs only on its own major
architecture, so an H100 (sm_90) uses the sm_90 entries alone. `pack --sm 90` moves those entries to the front
of each container, shrinks the container's size field to them and zeroes the rest, in place: the library's
layout, symbols and addresses are unchanged, and the driver sees the fatbin nvcc would have written for sm_90
only. Containers with no entry for the kept architecture are left whole. Then everything is compressed
with xz and split; a manifest holds every part's sha256 and the whole archive's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
STASH = Path("/tmp/m3rt-ortgpu-parts")
XZ = "xz --x86 --lzma2=preset=9e,dict=256MiB -T1"
MANIFEST = "parts.json"


def keep_arch(so: Path, sm: int) -> dict:
    """Rewrite every fatbin container of `so` in place to hold only its sm_`sm` entries."""
    data = bytearray(so.read_bytes())
    pos, stats = 0, dict(containers=0, untouched=0, bytes_dropped=0, entries_kept=0)
    while (i := data.find(FATBIN_MAGIC, pos)) >= 0:
        _version, header_size, fat_size = struct.unpack_from("<HHQ", data, i + 4)
        if header_size != 16 or i + 16 + fat_size > len(data):
            pos = i + 4  # the magic number by chance inside other data
            continue
        start, end = i + 16, i + 16 + fat_size
        entries, e = [], start
        while e < end:
            _kind, _ev, entry_header, padded = struct.unpack_from("<HHIQ", data, e)
            entry_sm = struct.unpack_from("<I", data, e + 28)[0]
            entries.append((e, entry_header + padded, entry_sm))
            e += entry_header + padded
        if e != end:
            raise SystemExit(f"{so}: fatbin container at {i:#x} does not parse; not slimming it")
        kept = [(off, size) for off, size, entry_sm in entries if entry_sm == sm]
        stats["containers"] += 1
        if not kept or len(kept) == len(entries):
            stats["untouched"] += 1
            pos = end
            continue
        packed = b"".join(bytes(data[off:off + size]) for off, size in kept)
        data[start:start + len(packed)] = packed
        data[start + len(packed):end] = bytes(end - start - len(packed))
        struct.pack_into("<Q", data, i + 8, len(packed))
        stats["bytes_dropped"] += fat_size - len(packed)
        stats["entries_kept"] += len(kept)
        pos = end
    so.write_bytes(bytes(data))
    return stats


def pack(wheel: Path, out: Path, sm: int, part_mib: float) -> None:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="m3rt-ortgpu-") as tmp:
        root = Path(tmp) / "site"
        with zipfile.ZipFile(wheel) as z:
            z.extractall(root)
        stats = keep_arch(root / "onnxruntime/capi/libonnxruntime_providers_cuda.so", sm)
        print(f"fatbin: {stats}")
        # No TensorRT libraries exist on the lent machines (the EP's bridge library would only fail to load),
        # and the runtime imports none of the offline tools (quantization, transformer fusions).
        (root / "onnxruntime/capi/libonnxruntime_providers_tensorrt.so").unlink()
        # libonnxruntime.so is the C API for other languages: the Python module and the CUDA provider link none of
        # it (readelf -d: no NEEDED entry), and dropping it lets the project's tracked files travel beside the parts.
        for lib in (root / "onnxruntime/capi").glob("libonnxruntime.so*"):
            lib.unlink()
        for tool in ("tools", "quantization", "transformers"):
            shutil.rmtree(root / "onnxruntime" / tool)
        # xz with the x86 branch filter and a window larger than the largest library: 56 MiB (1.31.1) where
        # zstd -19 --long gave 68 (with libonnxruntime.so), so it fits one device call beside the tracked files.
        archive = Path(tmp) / "ort.tar.xz"
        subprocess.run(["tar", "-C", str(root), "-I", XZ, "-cf", str(archive), "."], check=True)
        blob = archive.read_bytes()
    size = int(part_mib * 2**20)
    parts = []
    for k in range(0, len(blob), size):
        name = f"part-{k // size:02d}"
        (out / name).write_bytes(blob[k:k + size])
        parts.append(dict(name=name, sha256=hashlib.sha256(blob[k:k + size]).hexdigest()))
    manifest = dict(wheel=wheel.name, sm=sm, bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                    parts=parts, fatbin=stats)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{wheel.name} -> {len(parts)} parts of <= {part_mib} MiB ({len(blob) / 2**20:.1f} MiB) in "
          f"{out} ({time.perf_counter() - t0:.0f} s)")


def stash(src: Path) -> None:
    STASH.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / MANIFEST, STASH / MANIFEST)
    for part in sorted(src.glob("part-*")):
        shutil.copy2(part, STASH / part.name)
    have = sorted(p.name for p in STASH.glob("part-*"))
    want = [p["name"] for p in json.loads((STASH / MANIFEST).read_text())["parts"]]
    print(f"stashed in {STASH}: {have}; missing: {sorted(set(want) - set(have)) or 'none'}")


def unpack(target: Path) -> None:
    manifest = json.loads((STASH / MANIFEST).read_text())
    digest, blob = hashlib.sha256(), STASH / "ort.tar.xz"
    with blob.open("wb") as f:
        for part in manifest["parts"]:
            path = STASH / part["name"]
            if not path.is_file():
                raise SystemExit(f"{path} missing: the machine went back between calls; stash every part again")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise SystemExit(f"{path}: checksum mismatch")
            digest.update(data)
            f.write(data)
    if digest.hexdigest() != manifest["sha256"]:
        raise SystemExit("reassembled archive: checksum mismatch")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(target), "-I", "xz -d", "-xf", str(blob)], check=True)
    print(f"onnxruntime-gpu ({manifest['wheel']}, sm_{manifest['sm']} only) unpacked into {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("wheel", type=Path)
    p.add_argument("--out", type=Path, default=Path(".ortgpu"))
    p.add_argument("--sm", type=int, default=90)
    p.add_argument("--part-mib", type=float, default=60.0, help="the working tree travels too (64 MiB in all: 56 MiB of parts leave 8 for it)")
    s = sub.add_parser("stash")
    s.add_argument("src", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("--target", type=Path, default=Path("/tmp/site"))
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.wheel, args.out, args.sm, args.part_mib)
    elif args.cmd == "stash":
        stash(args.src)
    else:
        unpack(args.target)


if __name__ == "__main__":
    sys.exit(main())
