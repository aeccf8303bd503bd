"""The fields of each record kind, read from the firmware's own schema (signet.record).

`signet sign --field` parsing and `signet sign --help` both come from here, so they list what
the device builds and the gateway accepts, never a second hand-written list.
"""

from __future__ import annotations

from dataclasses import dataclass

from signet import record


@dataclass(frozen=True)
class Field:
    name: str
    required: bool
    integer: bool  # its CBOR type is an integer; every other field is text


def _takes_integers(check: object) -> bool:
    # The firmware's validators say what they accept, not what type they are: an integer
    # field's validator accepts 1, a text field's refuses any int ("must be a string").
    try:
        check("probe", 1)  # type: ignore[operator]
    except ValueError:
        return False
    return True


def of(kind: str) -> tuple[Field, ...]:
    """The fields of `kind`, in schema order; KeyError for an unknown kind."""
    # _FIELDS is the table validate_fields() checks records against; the firmware keeps it
    # private (no public copy: every name costs heap on a board), so it is read here.
    return tuple(
        Field(name, required, _takes_integers(check))
        for name, check, required in record._FIELDS[kind]
    )


def help_text() -> str:
    """The `sign --help` epilog: every kind with its fields."""
    lines = ["fields of each kind (--field NAME=VALUE, repeated; [optional]):"]
    for kind in record.KINDS:
        shown = []
        for f in of(kind):
            text = f"{f.name}={'INT' if f.integer else 'TEXT'}"
            shown.append(text if f.required else f"[{text}]")
        lines.append(f"  {kind:6} {' '.join(shown)}")
    lines.append("money is an integer number of minor units: am=250 is 2.50 (cur=EUR)")
    return "\n".join(lines)
