"""Hypothesis strategies for chunking: random Unicode, CJK, code, long words, whitespace."""

from __future__ import annotations

from hypothesis import strategies as st

# Any Unicode scalar value (hypothesis leaves out surrogates, which no str of text holds).
ANY = st.text(max_size=400)

_CJK_CHARS = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
# Ideographic full stop and comma, fullwidth ! ? , ( ) : ;, corner brackets, newline, space.
_CJK_PUNCT = st.sampled_from(
    list("\u3002\uff01\uff1f\u3001\uff0c\u300c\u300d\u300e\u300f\uff08\uff09\uff1a\uff1b\n ")
)
CJK = st.text(alphabet=st.one_of(_CJK_CHARS, _CJK_CHARS, _CJK_CHARS, _CJK_PUNCT), max_size=400)

_IDENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
_CODE_LINE = st.builds(
    lambda indent, a, b, end: " " * (4 * indent) + f"{a} = {b}({a}){end}",
    st.integers(0, 3),
    _IDENT,
    _IDENT,
    st.sampled_from(["", "  # note", ";", ":"]),
)
CODE = st.lists(_CODE_LINE, max_size=40).map(lambda lines: "\n".join(lines) + "\n")

LONG_WORDS = st.one_of(
    st.integers(1, 1500).map(lambda n: "a" * n),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzÀéß0123456789", min_size=50, max_size=1200),
    st.text(alphabet="😀🚀é\u0301\u200d👩🏽", min_size=10, max_size=300),  # graphemes, bytes
)

WHITESPACE = st.text(alphabet=" \t\n\r\u00a0\u3000\u2028\u2029\x0b\x0c", max_size=300)

_SENTENCE = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(
        st.sampled_from(["the", "model", "reads", "every", "token", "of", "a", "long", "page"]),
        min_size=1,
    ),
    st.sampled_from([". ", "! ", "? ", "… ", ".\n", ".\n\n", "。", "؟ ", "। "]),
)
PROSE = st.lists(_SENTENCE, max_size=60).map("".join)

MIXED = st.lists(st.one_of(ANY, CJK, CODE, LONG_WORDS, WHITESPACE, PROSE), max_size=4).map("".join)
EVERY_KIND = st.one_of(ANY, CJK, CODE, LONG_WORDS, WHITESPACE, PROSE, MIXED)
