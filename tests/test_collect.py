"""`make collect`: Canvas and Moodle bulk downloads into nbgrader's submitted/ layout, with a report of what could
not be placed."""

from __future__ import annotations

import zipfile

from helpers import ROOT, copy_course, run

ASSIGNMENT = "attention-pooling"
NB = f"{ASSIGNMENT}.ipynb"


def collect(course, archive):
    return run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "collect",
            f"ASSIGNMENT={ASSIGNMENT}",
            f"ZIP={archive}",
            f"COURSE={course}",
        ],
        cwd=ROOT,
        timeout=300,
    )


def test_canvas_download(tmp_path):
    course = copy_course(tmp_path / "course")
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"doejane_12345_6789012_{NB}", '{"cells": []}')
        zf.writestr(f"smithjohn_LATE_23456_7890123_{ASSIGNMENT}-1.ipynb", '{"cells": [1]}')  # a resubmission
        zf.writestr("leeann_34567_8901234_notes.txt", "my notes")
        zf.writestr("README.txt", "downloaded from Canvas")
        zf.writestr(f"../evil_1_2_{NB}", "{}")
        zf.writestr(f"__MACOSX/._doejane_12345_6789012_{NB}", "junk")
    out = collect(course, archive).stdout
    sub = course / "submitted"
    assert (sub / "doejane" / ASSIGNMENT / NB).read_text() == '{"cells": []}'
    assert (sub / "smithjohn" / ASSIGNMENT / NB).read_text() == '{"cells": [1]}'
    assert (sub / "leeann" / ASSIGNMENT / "notes.txt").exists()
    assert "NOT PLACED  README.txt: file name matches no known LMS pattern" in out
    assert f"NOT PLACED  ../evil_1_2_{NB}: unsafe path" in out
    assert "submitted late" in out
    assert "3 file(s) placed for 3 student(s); 3 file(s) could not be placed" in out
    assert not (tmp_path / f"evil_1_2_{NB}").exists()


def test_moodle_download_maps_names_to_the_roster(tmp_path):
    from nbgrader.api import Gradebook

    course = copy_course(tmp_path / "course")
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        gb.add_student("jdoe", first_name="Jane", last_name="Doe")
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"Jane Doe_4242_assignsubmission_file_/{NB}", "jane")
        zf.writestr(f"Émile Zola_4243_assignsubmission_file_/{NB}", "emile")
        zf.writestr(f"Ann Lee_4244_assignsubmission_file_{NB}", "ann")  # flat download, no folders
        zf.writestr("grading-worksheet.csv", "x")
    out = collect(course, archive).stdout
    sub = course / "submitted"
    assert (sub / "jdoe" / ASSIGNMENT / NB).read_text() == "jane"
    assert (sub / "emile-zola" / ASSIGNMENT / NB).read_text() == "emile"
    assert (sub / "ann-lee" / ASSIGNMENT / NB).read_text() == "ann"
    assert "'Émile Zola' is not in the roster: placed as 'emile-zola'" in out
    assert "NOT PLACED  grading-worksheet.csv" in out
