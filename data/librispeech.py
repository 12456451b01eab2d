"""Download LibriSpeech (OpenSLR 12), verify the published MD5s, convert to 16 kHz WAV and write manifests."""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import cli, librispeech
from deepspeech_pytorch.corpora.download import read_checksum_listing


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/librispeech")
    parser.add_argument("--subsets", nargs="+", choices=librispeech.SUBSETS, default=list(librispeech.SUBSETS))
    parser.add_argument("--base-url", default=librispeech.BASE_URL, help="where <subset>.tar.gz lives (default: %(default)s)")
    parser.add_argument("--checksums", default=None,
                        help="md5sum-style listing (path or URL) to verify against instead of the published MD5s")
    parser.add_argument("--no-verify", action="store_true", help="do not verify the archives' checksums")
    args = parser.parse_args(argv)

    def prepare():
        checksums = read_checksum_listing(args.checksums) if args.checksums else librispeech.PUBLISHED_CHECKSUMS
        return librispeech.prepare(args.target_dir, args.subsets, args.base_url, None if args.no_verify else checksums,
                                   cli.limits(args), args.workers, cli.alphabet(args), progress=not args.quiet)

    return cli.run(prepare, args)


if __name__ == "__main__":
    sys.exit(main())
