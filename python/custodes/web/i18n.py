"""The web page's language: Chinese or English, labels from the one message catalogue (custodes.messages)."""

from __future__ import annotations

from collections.abc import Callable

from custodes.messages import CATALOGUE, LANGUAGES, WEB, label

__all__ = ["LANG_COOKIE", "language_of", "translator"]

#: The cookie that keeps the visitor's choice of language.
LANG_COOKIE = "custodes_lang"


def language_of(cookie: str | None, accept_language: str | None) -> str:
    """The visitor's language: the one they chose (cookie), else English when their browser asks for it
    before Chinese, else Chinese (the page is for Chinese agencies first)."""
    if cookie in LANGUAGES:
        return str(cookie)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


def translator(lang: str) -> Callable[[str], str]:
    """``t(key)``: the label ``key`` in ``lang``. An unknown key is an error (a KeyError naming it), so a
    template that names a label nobody wrote fails its test instead of showing the key."""

    def t(key: str) -> str:
        if key not in WEB and key not in CATALOGUE:
            raise KeyError(f"no label {key!r} in custodes.messages (WEB or CATALOGUE)")
        return label(key, lang)

    return t
