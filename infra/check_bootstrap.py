"""After `sam build`: every function's bootstrap is an aarch64 Linux executable that needs no glibc
newer than Amazon Linux 2023's (2.34). Prints each binary's size and its zip size."""

import pathlib
import re
import struct
import sys
import zipfile
import io

AL2023_GLIBC = (2, 34)
EM_AARCH64 = 183


def check(path):
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return f"{path}: not an ELF file"
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine != EM_AARCH64:
        return f"{path}: e_machine {machine}, not aarch64 ({EM_AARCH64})"
    versions = {tuple(int(x) for x in m.groups()) for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)", data)}
    newest = max(versions, default=(0, 0))
    if newest > AL2023_GLIBC:
        return f"{path}: needs GLIBC_{newest[0]}.{newest[1]}, AL2023 has {AL2023_GLIBC[0]}.{AL2023_GLIBC[1]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "bootstrap")
    print(
        f"{path.parent.name}: aarch64, glibc <= {newest[0]}.{newest[1]}, "
        f"{len(data) / 2**20:.2f} MiB, zip {buf.tell() / 2**20:.2f} MiB"
    )
    return None


def main(root):
    found = sorted(pathlib.Path(root).glob("*/bootstrap"))
    if not found:
        print(f"no bootstrap under {root}: run sam build first", file=sys.stderr)
        return 1
    errors = [e for e in (check(p) for p in found) if e]
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build"))
