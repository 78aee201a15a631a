"""Rewrite the sglang-kernel wheel without the libraries a Llama on SGLang's triton backend never loads.

    python3 deploy/gpu/sglang/strip_kernel.py WHEELS_DIR

sglang-kernel 0.4.5 (CUDA 13, torch 2.11) is 383 MB; 342 MB of it, packed, is ``sgl_kernel/flash_ops*.so``
(FlashAttention 3, imported only for ``--attention-backend fa3``). ``sm100/common_ops`` (Blackwell),
``flashmla_ops`` and ``infllm_ops`` are loaded lazily or inside try/except. On a cc 9.0 GPU ``sgl_kernel``
loads ``sm90/common_ops``, which stays. The rewritten wheel (about 15 MB) replaces the downloaded one under the
same name; their RECORD lines go too, so pip installs it cleanly.

Reproducible: the members keep their order, timestamps and modes, each compressed with deflate at level 6, so
the same input gives the same bytes (the output's sha256 is printed and written to WHEELS_DIR/STRIPPED.txt
with the input's). Exit 2, one line, when the wheel is missing or no longer has the FlashAttention library
(its layout changed: check the patterns).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import sys
import zipfile

WHEEL_GLOB = "sglang_kernel-*.whl"
DROP = ("sgl_kernel/flash_ops*.so", "sgl_kernel/sm100/common_ops*.so", "sgl_kernel/*flashmla_ops*.so",
        "sgl_kernel/*infllm_ops*.so")
MUST_DROP = DROP[0]  # the 342 MB one: a wheel without it is not the layout this was written for


def dropped(name: str) -> bool:
    """Whether a wheel member is one of :data:`DROP` (fnmatch: ``*`` spans folders)."""
    return any(fnmatch.fnmatch(name, pat) for pat in DROP)


def strip(src: str, dst: str) -> list[str]:
    """Write ``src`` without the :data:`DROP` members (and their RECORD lines) to ``dst``; the names dropped.
    ValueError when none matches :data:`MUST_DROP`."""
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        gone = [i.filename for i in infos if dropped(i.filename)]
        if not any(fnmatch.fnmatch(n, MUST_DROP) for n in gone):
            raise ValueError(f"{os.path.basename(src)} has no {MUST_DROP}: its layout changed")
        with zipfile.ZipFile(dst, "w") as zout:
            for info in infos:
                if info.filename in gone:
                    continue
                data = zin.read(info.filename)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode("utf-8").splitlines(keepends=True)
                    data = "".join(ln for ln in lines if ln.split(",", 1)[0] not in gone).encode("utf-8")
                out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                out.external_attr = info.external_attr
                out.create_system = info.create_system
                out.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(out, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return gone


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("strip_kernel: usage: strip_kernel.py WHEELS_DIR (an existing folder)", file=sys.stderr)
        return 2
    found = glob.glob(os.path.join(argv[0], WHEEL_GLOB))
    if len(found) != 1:
        print(f"strip_kernel: error: {len(found)} wheels match {WHEEL_GLOB} in {argv[0]}, expected 1",
              file=sys.stderr)
        return 2
    src = found[0]
    before, size0 = sha256(src), os.path.getsize(src)
    tmp = src + ".tmp"
    try:
        gone = strip(src, tmp)
    except (ValueError, zipfile.BadZipFile) as e:
        print(f"strip_kernel: error: {e}", file=sys.stderr)
        if os.path.exists(tmp):
            os.unlink(tmp)
        return 2
    os.replace(tmp, src)
    after = sha256(src)
    with open(os.path.join(argv[0], "STRIPPED.txt"), "w", encoding="utf-8") as fh:
        fh.write(f"{os.path.basename(src)}\nregistry sha256: {before}\nstripped sha256: {after}\nremoved:\n")
        fh.writelines(f"  {n}\n" for n in gone)
    print(f"strip_kernel: {os.path.basename(src)}: {size0 / 2**20:.1f} -> {os.path.getsize(src) / 2**20:.1f} MiB, "
          f"{len(gone)} libraries removed, sha256 {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
