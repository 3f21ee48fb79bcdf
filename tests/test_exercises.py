"""exercises/ is exactly what nbgrader generates from solutions/, holds no answer or hidden test, and the
reference passes its own tests while the untouched exercise fails them."""

import filecmp
import html
import os

import pytest
from helpers import ASSIGNMENTS, ROOT, copy_course, run, source_notebooks

from attention_course import leaks


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("regenerate"))
    fresh = course / "fresh"
    for a in ASSIGNMENTS:
        run(
            [
                "nbgrader",
                "generate_assignment",
                a,
                "--force",
                f"--CourseDirectory.release_directory={fresh}",
                f"--CourseDirectory.db_url=sqlite:///{course}/gradebook.db",
            ],
            cwd=course,
        )
    return fresh


@pytest.mark.slow
def test_exercises_have_not_drifted(regenerated):
    committed = sorted(p.relative_to(ROOT / "exercises") for p in (ROOT / "exercises").rglob("*") if p.is_file())
    if os.environ.get("COURSE_ASSIGNMENTS"):  # a restricted run regenerates only those assignments
        committed = [p for p in committed if p.parts[0] in ASSIGNMENTS]
    fresh = sorted(p.relative_to(regenerated) for p in regenerated.rglob("*") if p.is_file())
    assert committed == fresh, "exercises/ lists other files than nbgrader generates: run `make exercises`"
    for rel in fresh:
        assert filecmp.cmp(ROOT / "exercises" / rel, regenerated / rel, shallow=False), (
            f"exercises/{rel} differs from what nbgrader generates now: run `make exercises`"
        )


def test_every_assignment_is_released():
    for a in ASSIGNMENTS:
        assert (ROOT / "exercises" / a / f"{a}.ipynb").is_file(), f"exercises/{a}/{a}.ipynb missing: make exercises"


def test_exercises_hold_no_solution_or_hidden_test():
    secrets = leaks.secrets(ROOT / "solutions")
    assert len(secrets) > 20, "the leak detector found too little to look for"
    found = leaks.find_leaks(secrets, (ROOT / "exercises").rglob("*"))
    assert not found, "\n".join(f"{p}: {s.kind} from {s.where}: {s.text!r}" for p, s in found[:10])
    for path in (ROOT / "exercises").rglob("*.ipynb"):
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{path} contains {marker}"


def test_leak_detector_finds_a_planted_leak(tmp_path):
    """The detector is not vacuous: a re-indented answer block and one hidden-test line are both found."""
    from attention_course import notebooks as nbt

    nb = nbt.read(source_notebooks(ASSIGNMENTS[0])[0])
    answer = next(iter(nbt.answer_cells(nb).values())).source
    block = nbt.solution_blocks(answer)[0]
    hidden = nbt.hidden_blocks(next(iter(nbt.test_cells(nb).values())).source)[0]
    long_line = next(
        l for l in hidden.splitlines() if len(l.strip()) >= leaks.MIN_HIDDEN_LINE and not l.strip().startswith("#")
    )
    page = tmp_path / "page.html"
    page.write_text(
        "<pre>" + "\n".join(f"<span>  {html.escape(l.strip())}</span>" for l in block.splitlines()) + "</pre>"
    )
    other = tmp_path / "other.md"
    other.write_text("text\n" + long_line + "\n")
    found = leaks.find_leaks(leaks.secrets(ROOT / "solutions"), [page, other])
    kinds = {(p.name, s.kind) for p, s in found}
    assert ("page.html", "reference answer") in kinds and ("other.md", "hidden test") in kinds


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_passes_and_untouched_exercise_fails_validation(assignment, tmp_path):
    """`nbgrader validate` exits 0 either way, so its report is read."""
    course = copy_course(tmp_path / "course")
    solved = run(["nbgrader", "validate", str(course / "solutions" / assignment / f"{assignment}.ipynb")], cwd=course)
    assert "Success! Your notebook passes all the tests." in solved.stdout, solved.stdout[-3000:]
    untouched = run(
        ["nbgrader", "validate", str(course / "exercises" / assignment / f"{assignment}.ipynb")], cwd=course
    )
    assert "Success!" not in untouched.stdout
    assert "NotImplementedError" in untouched.stdout, untouched.stdout[-3000:]
