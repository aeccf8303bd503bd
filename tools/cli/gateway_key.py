"""`signet gateway init-key` and `signet gateway key`: the transparency log's signing key.

The work is in gateway/log/key.py; the key's path and name come from gateway.toml [log].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .exits import EXIT_OK
from .exits import fail as _fail
from .gateway import DEFAULT_CONFIG


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the gateway's configuration, whose [log] key and origin are used (default:"
        f" ./{DEFAULT_CONFIG})",
    )


def cmd_init_key(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError, load
    from signet_gateway.log import key as log_key

    try:
        config = load(args.config)
        path = config.log.key
        replaced = path.exists()
        private = log_key.generate()
        log_key.save(path, private, force=args.force)
        public = log_key.save_public(path, private)
    except (ConfigError, log_key.KeyFileError) as exc:
        return _fail(str(exc))
    verifier = log_key.verifier(private, config.log.origin)
    print(f"log key    {path}  (mode 0600, keep it secret: it signs the log's checkpoints)")
    print(f"public     {public}")
    print(f"origin     {config.log.origin}")
    print(f"vkey       {verifier.vkey}")
    if replaced:
        print(
            "replaced   the previous key: what it signed verifies only with its own public key",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError, load
    from signet_gateway.log import key as log_key

    try:
        config = load(args.config)
        private = log_key.load(config.log.key)
    except (ConfigError, log_key.KeyFileError) as exc:
        return _fail(str(exc))
    if args.pem:
        sys.stdout.write(log_key.public_pem(private).decode())
    else:
        print(log_key.verifier(private, config.log.origin).vkey)
    return EXIT_OK


def add_parsers(gw: argparse._SubParsersAction) -> None:
    """Add `init-key` and `key` to the `signet gateway` subcommands."""
    p = gw.add_parser(
        "init-key",
        help="generate the log's Ed25519 signing key at [log] key; print its public key",
        description="Generate the transparency log's Ed25519 signing key and write it to the"
        " [log] key path of the configuration (PKCS#8 PEM, mode 0600), with its public key"
        " beside it (KEY.pub.pem); print the C2SP verifier key line (origin+key id+key) that"
        " auditors use to check the log's checkpoints. An existing key is never overwritten"
        " without --force. Exit 0 written; 2 a configuration error, an existing key, or a"
        " path that cannot be written.",
    )
    _config_arg(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing key (what it signed then verifies only with the old key)",
    )
    p.set_defaults(func=cmd_init_key)
    p = gw.add_parser(
        "key",
        help="print the log's public key: the C2SP verifier key line, or PEM",
        description="Print the public key of the log key at [log] key, as the C2SP verifier"
        " key line <origin>+<key id>+<base64 key> (the default) or as PEM. Reads the private"
        " key: run it as the gateway's user. Exit 0 printed; 2 no key, a key readable by"
        " group or others, or a configuration error.",
    )
    _config_arg(p)
    p.add_argument("--pem", action="store_true", help="print the PEM public key instead")
    p.set_defaults(func=cmd_key)
