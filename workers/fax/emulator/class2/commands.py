"""Split one AT command line into its commands, the way a modem reads it.

A line is ``AT`` followed by any number of commands: basic ones (a letter and an optional
number: ``E0``, ``H``; ``&F``; ``S0=1``), extended ones (``+FCLASS=2.0``, ``+FLI?``,
``+FCC=?``) separated by ``;``, and the dial command ``D``, which takes the rest of the
line. Names are case-insensitive; quoted arguments keep their case and may hold ``;``.
"""

from __future__ import annotations

from dataclasses import dataclass


class CommandSyntaxError(ValueError):
    """The line is not a well-formed AT command line."""


@dataclass(frozen=True)
class Command:
    name: str
    """Upper-case: ``E``, ``D``, ``&F``, ``S0``, ``+FCLASS``."""
    op: str = ""
    """``""`` (action or basic value), ``"="`` (set), ``"?"`` (read) or ``"=?"`` (test)."""
    arg: str = ""


def split(line: str) -> list[Command]:
    """The commands of one line (without its CR); raises :class:`CommandSyntaxError`."""
    text = line.strip()
    if text[:2].upper() != "AT":
        raise CommandSyntaxError(f"not an AT command: {line!r}")
    body = text[2:]
    commands: list[Command] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch in " ;":
            i += 1
        elif ch == "+":
            command, i = _extended(body, i)
            commands.append(command)
        elif ch.upper() == "D":
            commands.append(Command("D", "", body[i + 1 :].strip()))
            i = n
        elif ch == "&":
            if i + 1 >= n or not body[i + 1].isalpha():
                raise CommandSyntaxError(f"bad & command in {line!r}")
            letter = body[i + 1].upper()
            digits, i = _digits(body, i + 2)
            commands.append(Command("&" + letter, "", digits))
        elif ch.upper() == "S":
            register, j = _digits(body, i + 1)
            if not register:
                raise CommandSyntaxError(f"S without a register in {line!r}")
            if body[j : j + 1] == "?":
                commands.append(Command("S" + register, "?"))
                i = j + 1
            elif body[j : j + 1] == "=":
                value, i = _digits(body, j + 1)
                commands.append(Command("S" + register, "=", value))
            else:
                raise CommandSyntaxError(f"S{register} needs = or ? in {line!r}")
        elif ch.isalpha():
            digits, i = _digits(body, i + 1)
            commands.append(Command(ch.upper(), "", digits))
        else:
            raise CommandSyntaxError(f"unexpected {ch!r} in {line!r}")
    return commands


def _digits(body: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(body) and body[j].isdigit():
        j += 1
    return body[i:j], j


def _extended(body: str, i: int) -> tuple[Command, int]:
    j = i + 1
    while j < len(body) and (body[j].isalnum() or body[j] in "._"):
        j += 1
    name = body[i:j].upper()
    if len(name) < 2:
        raise CommandSyntaxError(f"bad extended command at {body[i:]!r}")
    if body.startswith("=?", j):
        return Command(name, "=?"), j + 2
    if body.startswith("?", j):
        return Command(name, "?"), j + 1
    if body.startswith("=", j):
        k = j + 1
        quoted = False
        while k < len(body) and (quoted or body[k] != ";"):
            if body[k] == '"':
                quoted = not quoted
            k += 1
        if quoted:
            raise CommandSyntaxError(f"unterminated string in {body[i:]!r}")
        return Command(name, "=", body[j + 1 : k].strip()), k
    return Command(name), j
