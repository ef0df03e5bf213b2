"""``python -m converters.disks SRC TARGET [--format raw|qcow2] [--progress json]``

SRC: a local image path or an http(s) URL (a datastore ``/folder`` URL); cookies or other
headers with ``--header 'Cookie: vmware_soap_session=...'`` (never printed).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import NoReturn

from core.errors import MigratorError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other failure
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m converters.disks", description="Copy one disk image.")
    parser.add_argument("source", help="local image path, or http(s) URL of a VMDK")
    parser.add_argument("target", help="file, existing directory (→ disk.img) or block device")
    parser.add_argument("--format", choices=["raw", "qcow2"], default="raw", help="target format")
    parser.add_argument("--progress", choices=["auto", "json", "none"], default="auto")
    parser.add_argument("--name", help="disk name in progress output (default: source file name)")
    parser.add_argument("--header", action="append", default=[], metavar="'Name: value'", help="HTTP header")
    parser.add_argument("--header-file", type=Path, help="file of HTTP headers, one 'Name: value' a line")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    parser.add_argument(
        "--verify", action="store_true", help="after an fsync, re-read the target from storage and check every chunk"
    )
    parser.add_argument("--compare", action="store_true", help="also run qemu-img compare (local sources)")
    parser.add_argument("--fsync", action="store_true", help="flush the target to stable storage before finishing")
    parser.add_argument("--max-rate", type=float, help="bytes per second to read from the source")
    parser.add_argument("--chunk-size", type=int, help="bytes per chunk of the state record (multiple of 64 KiB)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the transfer as Ctrl-C does
    try:
        from converters.disks import DiskJob, HttpSource, LocalSource, transfer_disks
        from converters.disks.engine import CHUNK

        headers: dict[str, str] = {}
        lines = list(args.header)
        if args.header_file:
            try:
                lines += [line for line in args.header_file.read_text().splitlines() if line.strip()]
            except OSError as exc:
                from core.errors import InputError

                raise InputError(f"{args.header_file}: {exc.strerror}") from None
        for header in lines:
            key, sep, value = header.partition(":")
            if not sep:
                from core.errors import InputError

                raise InputError(f"--header needs 'Name: value', got {key!r}")
            headers[key.strip()] = value.strip()
        if args.source.startswith(("http://", "https://")):
            context = None
            if args.insecure:
                import ssl

                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            source: LocalSource | HttpSource = HttpSource(args.source, headers, context)
            default_name = args.source.split("?", 1)[0].rsplit("/", 1)[-1]
        else:
            source = LocalSource(Path(args.source))
            default_name = Path(args.source).name
        job = DiskJob(args.name or default_name, source, Path(args.target), args.format)
        [result] = transfer_disks(
            [job],
            concurrency=1,
            progress=args.progress,
            verify=args.verify,
            compare=args.compare,
            fsync=args.fsync,
            max_rate=args.max_rate,
            chunk_size=args.chunk_size or CHUNK,
        )
    except MigratorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (run again to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line
        print(f"error: internal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    summary = {
        "disk": result.name,
        "target": str(result.target),
        "virtual_size": result.virtual_size,
        "bytes_transferred": result.bytes_transferred,
        "verified": result.verified,
        "verified_bytes": result.verified_bytes,
        "verify_seconds": round(result.verify_seconds, 3),
        "repaired_chunks_at": list(result.repaired),
        "skipped": result.skipped,
        "seconds": round(result.seconds, 3),
    }
    if args.progress == "json":
        print(json.dumps({"result": summary}))
    else:
        print(json.dumps(summary))
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
