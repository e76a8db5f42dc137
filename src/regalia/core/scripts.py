"""Unicode scripts of a name, to refuse look-alikes that mix them (``prоduction``
with a Cyrillic ``о``), no I/O.

A character's script is its Unicode ``Script`` property, read through the
``regex`` module's ``\\p{Script=...}`` (its tables follow the Unicode
standard, so nothing here lists code point ranges). ``Common`` (digits,
punctuation, ``-``, ``_``, ``.``) and ``Inherited`` (combining marks) belong to
every script. A name may use one script, or Latin with the scripts a CJK
language writes together with it::

    >>> mixed_scripts("モデル-v2")          # Katakana with Latin: Japanese
    >>> mixed_scripts("pr\\u043eduction")
    ('Latin', 'Cyrillic', 'о')
"""

from __future__ import annotations

from functools import lru_cache

import regex

# Unicode's long script names (PropertyValueAliases.txt), the usual ones first so
# the search for a character's script ends early. Names that the installed
# ``regex`` does not know yet (a newer Unicode version) are skipped; their
# characters count as the script "Unknown", which mixes with every other one.
_NAMES = [
    "Latin",
    "Han",
    "Hiragana",
    "Katakana",
    "Hangul",
    "Bopomofo",
    "Cyrillic",
    "Greek",
    "Arabic",
    "Hebrew",
    "Devanagari",
    "Thai",
    "Armenian",
    "Georgian",
    "Bengali",
    "Tamil",
    "Telugu",
    "Kannada",
    "Malayalam",
    "Gujarati",
    "Gurmukhi",
    "Oriya",
    "Sinhala",
    "Lao",
    "Tibetan",
    "Myanmar",
    "Khmer",
    "Ethiopic",
    "Mongolian",
    "Thaana",
    "Syriac",
    "Nko",
    "Yi",
    "Cherokee",
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Beria_Erfe",
    "Bhaiksuki",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Chorasmian",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cypro_Minoan",
    "Deseret",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Garay",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Gunjala_Gondi",
    "Gurung_Khema",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Imperial_Aramaic",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Jurchen",
    "Kaithi",
    "Katakana_Or_Hiragana",
    "Kawi",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khojki",
    "Khudawadi",
    "Kirat_Rai",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mro",
    "Multani",
    "Nabataean",
    "Nag_Mundari",
    "Nandinagari",
    "Newa",
    "New_Tai_Lue",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Ol_Onal",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Old_Uyghur",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Proto_Cuneiform",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Seal",
    "Sharada",
    "Shavian",
    "Siddham",
    "Sidetic",
    "SignWriting",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Sunuwar",
    "Syloti_Nagri",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Tai_Yo",
    "Takri",
    "Tangsa",
    "Tangut",
    "Tifinagh",
    "Tirhuta",
    "Todhri",
    "Tolong_Siki",
    "Toto",
    "Tulu_Tigalari",
    "Ugaritic",
    "Vai",
    "Vithkuqi",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Zanabazar_Square",
]

# Latin may be combined with the scripts of Japanese, Korean and Chinese writing
# (UTS #39's "highly restrictive" level).
ALLOWED_COMBINATIONS: tuple[frozenset[str], ...] = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Hangul"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
)


def _known(name: str) -> bool:
    try:
        regex.compile(rf"\p{{Script={name}}}")
    except regex.error:
        return False
    return True


SCRIPT_NAMES: tuple[str, ...] = tuple(n for n in _NAMES if _known(n))
_CLASSES = [(n.replace("_", " "), regex.compile(rf"\p{{Script={n}}}")) for n in SCRIPT_NAMES]
_SPECIFIC = regex.compile(r"[^\p{Script=Common}\p{Script=Inherited}]")


@lru_cache(maxsize=4096)
def script_of(ch: str) -> str:
    """The script of one character that is neither Common nor Inherited, e.g. ``'Cyrillic'``."""
    for name, pattern in _CLASSES:
        if pattern.match(ch):
            return name
    return "Unknown"


def scripts(text: str) -> dict[str, str]:
    """The scripts ``text`` uses (Common and Inherited left out), each with its
    first character: ``{"Latin": "p", "Cyrillic": "о"}``."""
    found: dict[str, str] = {}
    for m in _SPECIFIC.finditer(text):
        found.setdefault(script_of(m.group()), m.group())
    return found


def mixed_scripts(text: str) -> tuple[str, str, str] | None:
    """None when ``text`` uses one script or an allowed combination; otherwise
    ``(first script, script that does not go with it, its first character)``."""
    if text.isascii():
        return None
    found = scripts(text)
    if len(found) <= 1:
        return None
    used = set(found)
    if any(used <= allowed for allowed in ALLOWED_COMBINATIONS):
        return None
    first, *rest = found
    partner = next(
        (s for s in rest if not any({first, s} <= a for a in ALLOWED_COMBINATIONS)), rest[0]
    )
    return first, partner, found[partner]
