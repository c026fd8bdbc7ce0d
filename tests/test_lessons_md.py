"""lessons.md maps the notes the course grew from onto the lessons, both ways, consistently.

The table "The notes, section by section" says which lessons teach each of the notes'
fifteen sections; each lesson's **Notes:** line says which sections it covers. Every
section is taught somewhere, and the two views agree.
"""

from __future__ import annotations

import re
from pathlib import Path

LESSONS_MD = Path(__file__).resolve().parent.parent / "lessons.md"
NOTES_SECTIONS = range(1, 16)
TEXT = LESSONS_MD.read_text(encoding="utf-8")


def table() -> dict[int, set[str]]:
    """Notes section -> the lessons the coverage table says teach it."""
    rows = re.findall(r"^\| (\d+) \| [^|]+\| ([\d, ]+) \|", TEXT, re.MULTILINE)
    return {int(section): {lesson.strip() for lesson in lessons.split(",")} for section, lessons in rows}


def notes_lines() -> dict[str, str]:
    """Lesson number -> its **Notes:** line."""
    lines = {}
    for number, body in re.findall(r"^## (\d\d) .*?\n(.*?)(?=^## |\Z)", TEXT, re.MULTILINE | re.DOTALL):
        found = re.search(r"^- \*\*Notes:\*\* (.*)$", body, re.MULTILINE)
        assert found, f"lesson {number} in lessons.md has no **Notes:** line"
        lines[number] = found.group(1)
    return lines


def test_every_notes_section_is_taught() -> None:
    assert sorted(table()) == list(NOTES_SECTIONS)
    assert all(table().values())


def test_every_lesson_names_the_sections_it_covers() -> None:
    assert sorted(notes_lines()) == [f"{n:02d}" for n in range(11)]


def test_the_table_and_the_lessons_agree() -> None:
    from_lessons: dict[int, set[str]] = {}
    for lesson, line in notes_lines().items():
        for section in re.findall(r"§(\d+)", line):
            from_lessons.setdefault(int(section), set()).add(lesson)
    assert from_lessons == table()
