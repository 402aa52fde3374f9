"""What the scripted intake responder takes from a caller's words: the value for a todo item
("My name is Alice Johnson." -> ``Alice Johnson``; "call me back on five five five, one two
three four" -> ``555-1234``), or nothing when the words are a question or hold no such value.

Rules, not understanding: the kind of item is guessed from its id and description (a name, a
phone number, an email address, anything else), each kind has a few patterns for how people say
it, and a question is a sentence that ends with ``?`` (or, without a final mark, starts like
one).
"""

from __future__ import annotations

import re
from typing import Literal

from agents.messages import TodoItem

ItemKind = Literal["name", "phone", "email", "other"]

_QUESTION_START = re.compile(
    r"^(what|who|whom|whose|why|how|where|when|which|"
    r"(can|could|would|will|do|does|did|are|is|am|should|may|might|shall)\s+"
    r"(you|i|we|it|this|that|there|your|my)\b)",
    re.IGNORECASE,
)
_NAME_LEAD = re.compile(
    r"^.*?\b(?:my\s+(?:full\s+)?name\s+is|my\s+name's|name's|i\s+am|i'm|this\s+is|it's|it\s+is|"
    r"call\s+me|you\s+can\s+call\s+me|they\s+call\s+me)\s+",
    re.IGNORECASE,
)
_NAME_STOP = re.compile(
    r"\s*(?:[,.;!?]|\band\b|\bbut\b|\bfrom\b|\bcalling\b|\bhere\b|\bthanks?\b|\bthank you\b|"
    r"\bplease\b)",
    re.IGNORECASE,
)
_OTHER_LEAD = re.compile(
    r"^(?:(?:well|so|um|uh|er|yes|yeah|ok|okay|sure|hi|hello)\b[,.!]?\s*)*"
    r"(?:(?:i'm|i\s+am)\s+calling\s+(?:about|because|regarding|since)\s+|"
    r"(?:it's|it\s+is|this\s+is|the\s+call\s+is|my\s+call\s+is)\s+(?:about|regarding)\s+|"
    r"(?:it's|it\s+is)\s+(?:that\s+)?)?",
    re.IGNORECASE,
)
_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
_REPEATS = {"double": 2, "triple": 3}
_NOT_A_NAME = frozenset(
    {"not", "sorry", "calling", "here", "just", "fine", "good", "okay", "ok", "about", "looking",
     "trying", "afraid", "a", "an", "the", "in", "on", "at", "with", "from", "going", "sure"}
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MIN_PHONE_DIGITS = 5
_MAX_NAME_WORDS = 5


def item_kind(item: TodoItem) -> ItemKind:
    """What kind of value an item asks for, from its id and description."""
    text = f"{item.id} {item.description}".lower().replace("_", " ")
    if re.search(r"\be-?mail\b", text):
        return "email"
    if re.search(r"\b(phone|telephone|mobile|callback|call back|number to call)\b", text):
        return "phone"
    if re.search(r"\bnumber\b", text) and re.search(r"\b(call|reach|contact)\b", text):
        return "phone"
    if re.search(r"\bname\b", text) and not re.search(r"\b(company|pet|product)\b", text):
        return "name"
    return "other"


def is_question(text: str) -> bool:
    """Does the caller ask something rather than answer? A sentence ending in ``?``; without a
    final mark (some recognisers leave it out), one that starts like a question. A sentence
    ending in ``.`` or ``!`` is a statement, whatever its first word ("What happened is ...")."""
    stripped = text.strip()
    if stripped.endswith("?"):
        return True
    if stripped.endswith((".", "!")):
        return False
    return bool(_QUESTION_START.match(stripped))


def extract_value(item: TodoItem, text: str) -> str | None:
    """The value for ``item`` in the caller's ``text``; ``None`` when there is none to take."""
    text = " ".join(text.split())
    if not text:
        return None
    kind = item_kind(item)
    if kind == "phone":
        return phone_number(text)
    if kind == "email":
        return email_address(text)
    if kind == "name":
        return person_name(text)
    return other_value(text)


def person_name(text: str) -> str | None:
    lead = _NAME_LEAD.match(text)
    rest = text[lead.end():] if lead else text
    stop = _NAME_STOP.search(rest)
    name = (rest[: stop.start()] if stop else rest).strip(" .,!?;:'\"")
    words = name.split()
    if not words or (lead is None and len(words) > _MAX_NAME_WORDS):
        return None
    if words[0].lower() in _NOT_A_NAME:
        return None
    return " ".join(words[:_MAX_NAME_WORDS])


def phone_number(text: str) -> str | None:
    """Digits as written ("555-1234", "+1 555 123 4567") or spoken ("five five five, one two
    three four", "double five"), formatted like a North American number when they fit."""
    written = re.findall(r"\+?\d[\d\s().-]*\d|\d", text)
    digits = "".join(re.sub(r"\D", "", part) for part in written)
    plus = any(part.startswith("+") for part in written)
    if len(digits) < _MIN_PHONE_DIGITS:
        digits = _spoken_digits(text)
        plus = False
    if len(digits) < _MIN_PHONE_DIGITS:
        return None
    if plus:
        return "+" + digits
    if len(digits) == 7:
        return f"{digits[:3]}-{digits[3:]}"
    if len(digits) == 10:
        return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    return digits


def _spoken_digits(text: str) -> str:
    out: list[str] = []
    repeat = 1
    previous_digit = False
    for word in re.findall(r"[a-z]+|\d", text.lower()):
        if word in _REPEATS:
            repeat = _REPEATS[word]
            continue
        digit = word if word.isdigit() else _DIGIT_WORDS.get(word)
        if digit == "0" and word in ("oh", "o") and not previous_digit:
            digit = None  # "Oh, it's ..." is not a zero
        if digit is not None:
            out.append(digit * repeat)
        previous_digit = digit is not None
        repeat = 1
    return "".join(out)


def email_address(text: str) -> str | None:
    found = _EMAIL.search(text)
    if found is None:
        spoken = re.sub(r"\s+at\s+", "@", text, flags=re.IGNORECASE)
        spoken = re.sub(r"\s+dot\s+", ".", spoken, flags=re.IGNORECASE)
        found = _EMAIL.search(spoken)
    return found.group(0).rstrip(".").lower() if found else None


def other_value(text: str) -> str | None:
    value = _OTHER_LEAD.sub("", text, count=1).strip()
    if not value or not re.search(r"\w", value):
        return None
    return value[0].upper() + value[1:]
