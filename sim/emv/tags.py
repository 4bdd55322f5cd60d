"""The EMV tag dictionary: names and formats of the data objects possim handles.

Names follow EMV 4.4 Book 3 Annex A. Formats: ``b`` binary, ``n`` numeric BCD,
``cn`` compressed numeric, ``an``/``ans`` text. The format decides how a value is
shown (BCD digits as digits, text as text, the rest as hex), never how it is coded.

Examples
--------
>>> TAGS["9F26"].name
'Application Cryptogram'
>>> tag_name("9F99")
'unknown tag 9F99'
"""

from __future__ import annotations

from typing import NamedTuple


class Tag(NamedTuple):
    """A data object's name and format."""

    name: str
    fmt: str


TAGS: dict[str, Tag] = {
    t: Tag(n, f)
    for t, n, f in [
        ("42", "Issuer Identification Number (IIN)", "n"),
        ("4F", "Application Identifier (AID) - card", "b"),
        ("50", "Application Label", "ans"),
        ("57", "Track 2 Equivalent Data", "b"),
        ("5A", "Application Primary Account Number (PAN)", "cn"),
        ("5F20", "Cardholder Name", "ans"),
        ("5F24", "Application Expiration Date", "n"),
        ("5F25", "Application Effective Date", "n"),
        ("5F28", "Issuer Country Code", "n"),
        ("5F2A", "Transaction Currency Code", "n"),
        ("5F2D", "Language Preference", "an"),
        ("5F30", "Service Code", "n"),
        ("5F34", "Application PAN Sequence Number", "n"),
        ("5F36", "Transaction Currency Exponent", "n"),
        ("61", "Application Template", "b"),
        ("6F", "File Control Information (FCI) Template", "b"),
        ("70", "READ RECORD Response Message Template", "b"),
        ("71", "Issuer Script Template 1", "b"),
        ("72", "Issuer Script Template 2", "b"),
        ("77", "Response Message Template Format 2", "b"),
        ("80", "Response Message Template Format 1", "b"),
        ("82", "Application Interchange Profile", "b"),
        ("84", "Dedicated File (DF) Name", "b"),
        ("87", "Application Priority Indicator", "b"),
        ("88", "Short File Identifier (SFI)", "b"),
        ("89", "Authorisation Code", "an"),
        ("8A", "Authorisation Response Code", "an"),
        ("8C", "Card Risk Management Data Object List 1 (CDOL1)", "b"),
        ("8D", "Card Risk Management Data Object List 2 (CDOL2)", "b"),
        ("8E", "Cardholder Verification Method (CVM) List", "b"),
        ("8F", "Certification Authority Public Key Index", "b"),
        ("90", "Issuer Public Key Certificate", "b"),
        ("91", "Issuer Authentication Data", "b"),
        ("92", "Issuer Public Key Remainder", "b"),
        ("93", "Signed Static Application Data", "b"),
        ("94", "Application File Locator (AFL)", "b"),
        ("95", "Terminal Verification Results", "b"),
        ("9A", "Transaction Date", "n"),
        ("9B", "Transaction Status Information", "b"),
        ("9C", "Transaction Type", "n"),
        ("9D", "Directory Definition File (DDF) Name", "b"),
        ("9F01", "Acquirer Identifier", "n"),
        ("9F02", "Amount, Authorised (Numeric)", "n"),
        ("9F03", "Amount, Other (Numeric)", "n"),
        ("9F06", "Application Identifier (AID) - terminal", "b"),
        ("9F07", "Application Usage Control", "b"),
        ("9F08", "Application Version Number - card", "b"),
        ("9F09", "Application Version Number - terminal", "b"),
        ("9F0D", "Issuer Action Code - Default", "b"),
        ("9F0E", "Issuer Action Code - Denial", "b"),
        ("9F0F", "Issuer Action Code - Online", "b"),
        ("9F10", "Issuer Application Data", "b"),
        ("9F11", "Issuer Code Table Index", "n"),
        ("9F12", "Application Preferred Name", "ans"),
        ("9F13", "Last Online Application Transaction Counter (ATC) Register", "b"),
        ("9F14", "Lower Consecutive Offline Limit", "b"),
        ("9F15", "Merchant Category Code", "n"),
        ("9F16", "Merchant Identifier", "ans"),
        ("9F17", "Personal Identification Number (PIN) Try Counter", "b"),
        ("9F1A", "Terminal Country Code", "n"),
        ("9F1B", "Terminal Floor Limit", "b"),
        ("9F1C", "Terminal Identification", "an"),
        ("9F1E", "Interface Device (IFD) Serial Number", "an"),
        ("9F1F", "Track 1 Discretionary Data", "ans"),
        ("9F21", "Transaction Time", "n"),
        ("9F23", "Upper Consecutive Offline Limit", "b"),
        ("9F26", "Application Cryptogram", "b"),
        ("9F27", "Cryptogram Information Data", "b"),
        ("9F32", "Issuer Public Key Exponent", "b"),
        ("9F33", "Terminal Capabilities", "b"),
        ("9F34", "Cardholder Verification Method (CVM) Results", "b"),
        ("9F35", "Terminal Type", "n"),
        ("9F36", "Application Transaction Counter (ATC)", "b"),
        ("9F37", "Unpredictable Number", "b"),
        ("9F38", "Processing Options Data Object List (PDOL)", "b"),
        ("9F39", "Point-of-Service (POS) Entry Mode", "n"),
        ("9F40", "Additional Terminal Capabilities", "b"),
        ("9F41", "Transaction Sequence Counter", "n"),
        ("9F42", "Application Currency Code", "n"),
        ("9F44", "Application Currency Exponent", "n"),
        ("9F45", "Data Authentication Code", "b"),
        ("9F46", "ICC Public Key Certificate", "b"),
        ("9F47", "ICC Public Key Exponent", "b"),
        ("9F48", "ICC Public Key Remainder", "b"),
        ("9F49", "Dynamic Data Authentication Data Object List (DDOL)", "b"),
        ("9F4A", "Static Data Authentication Tag List", "b"),
        ("9F4B", "Signed Dynamic Application Data", "b"),
        ("9F4C", "ICC Dynamic Number", "b"),
        ("9F4E", "Merchant Name and Location", "ans"),
        ("9F53", "Transaction Category Code", "an"),
        ("9F66", "Terminal Transaction Qualifiers (TTQ)", "b"),
        ("9F6C", "Card Transaction Qualifiers (CTQ)", "b"),
        ("9F6E", "Form Factor Indicator / Third Party Data", "b"),
        ("A5", "File Control Information (FCI) Proprietary Template", "b"),
        ("BF0C", "File Control Information (FCI) Issuer Discretionary Data", "b"),
        ("DF8129", "Outcome Parameter Set", "b"),
    ]
}


def tag_name(tag: str) -> str:
    """Name of a tag (hex, any case), or ``'unknown tag XXXX'``."""
    entry = TAGS.get(tag.upper())
    return entry.name if entry else f"unknown tag {tag.upper()}"


def show_value(tag: str, value: bytes) -> str:
    """Human form of a value: digits for ``n``, text for ``an``/``ans``, hex otherwise."""
    entry = TAGS.get(tag.upper())
    if entry is not None and entry.fmt in ("an", "ans"):
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return value.hex().upper()
        if text.isprintable():
            return text
    return value.hex().upper()
