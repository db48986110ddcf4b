"""Inputs of varied length, script and kind for the unit tests."""

from __future__ import annotations

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Привет, мир! Это пример текста на русском языке.",
    "東京は日本の首都です。",
    "def add(a: int, b: int) -> int:\n    return a + b\n",
    "",
    "a",
    "Errors should never pass silently. " * 12,
    "Der schnelle braune Fuchs springt über den faulen Hund. " * 30,
    "SELECT id, title FROM documents WHERE score > 0.75 ORDER BY score DESC; " * 6,
    "  leading and trailing spaces  ",
    "emoji 🚀 and digits 1234567890",
]
