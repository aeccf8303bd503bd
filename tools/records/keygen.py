"""`signet keygen`: a device key in a file (the software-signed tier)."""

from __future__ import annotations

from pathlib import Path

from signet import keyfile
from signet.signer import SoftwareSigner
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.runners.atomic_file import write_atomically


def pub_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub.pem")


def write_private(path: Path, text: str, force: bool) -> None:
    """Write atomically with mode 0600 from the first byte (never briefly world-readable)."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; refusing to overwrite a key (use --force)")
    write_atomically(path, (text + "\n").encode(), private=True)


def generate(curve: str, out: Path, force: bool = False) -> SoftwareSigner:
    """Generate a key with the firmware's own code (os.urandom) and write both files."""
    if out.is_dir():
        raise IsADirectoryError(
            f"{out} is a directory: give the key file's path, e.g. {out}/dev.key"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    signer = SoftwareSigner.generate(curve)
    write_private(out, keyfile.dumps(signer), force)
    public = DevicePublicKey.from_sec1(signer.public_key, curve)
    pub_path(out).write_bytes(public.to_pem())
    return signer
