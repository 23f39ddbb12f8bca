"""Guests' phone numbers: what a person types, checked and written as E.164 (+79991234567)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

# Longer input is not a phone number, and phonenumbers need not spend time on it.
MAX_INPUT_LENGTH: Final = 32
# Numbers typed without a country code are read as Russian ones (8 999 ... or 999 ...).
DEFAULT_REGION: Final = "RU"
SMS_CAPABLE: Final = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# Shown in full: "+", the country code and this many national digits; and the last digits.
MASK_KEEP_NATIONAL: Final = 3
MASK_KEEP_LAST: Final = 2


class PhoneRefused(ValueError):
    """`key` names the message (in the portal catalogue) that tells the guest what to do."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Phone:
    e164: str
    shown: str
    """International format for people: +7 999 123-45-67."""


def parse_phone(raw: str, allowed_country_codes: Collection[int]) -> Phone:
    text = raw.strip()
    if not text or len(text) > MAX_INPUT_LENGTH:
        raise PhoneRefused("phone.invalid")
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise PhoneRefused("phone.invalid") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneRefused("phone.invalid")
    if number.country_code not in allowed_country_codes:
        raise PhoneRefused("phone.country")
    if phonenumbers.number_type(number) not in SMS_CAPABLE:
        raise PhoneRefused("phone.not_mobile")
    return Phone(
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
    )


def shown(e164: str) -> str:
    """+79991234567 as +7 999 123-45-67 (a stored number is valid; anything else is shown as stored)."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164), PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164


def masked(e164: str) -> str:
    """+7 999 ***-**-67: enough for a guest to recognise the number, not enough to call it."""
    try:
        country_digits = len(str(phonenumbers.parse(e164).country_code))
    except phonenumbers.NumberParseException:
        country_digits = 1
    text = shown(e164)
    total = sum(c.isdigit() for c in text)
    keep_first, keep_from = country_digits + MASK_KEEP_NATIONAL, total - MASK_KEEP_LAST
    out, seen = [], 0
    for c in text:
        if c.isdigit():
            out.append(c if seen < keep_first or seen >= keep_from else "*")
            seen += 1
        else:
            out.append(c)
    return "".join(out)
