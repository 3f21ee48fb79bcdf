"""Late-submission penalties: two policies on nbgrader's own interface (`nbgrader.plugins.LateSubmissionPlugin`,
`late_submission_penalty(student_id, score, total_seconds_late)`), chosen in nbgrader_config.py the way nbgrader
chooses one:

    c.AssignLatePenalties.plugin_class = "attention_course.grading.late.FractionPerDay"
    c.FractionPerDay.fraction = 0.1          # of the notebook's score, per started day late
    # or: c.AssignLatePenalties.plugin_class = "attention_course.grading.late.ZeroWhenLate"

Both are called only for a late notebook (`total_seconds_late > 0`: after the due date plus the student's
extension) and return the penalty in points; the caller (term.py, or nbgrader's `AssignLatePenalties` under plain
`nbgrader autograde`) clips it to [0, score].
"""

from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

DAY = 86400.0


class FractionPerDay(LateSubmissionPlugin):
    """`fraction` of the score per started day late (a day is 24 h after the deadline), at most the whole score."""

    fraction = Float(0.1, help="Fraction of the score taken per started day late (0.1: 10% a day).").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        if total_seconds_late <= 0:
            return 0.0
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"c.FractionPerDay.fraction must lie in [0, 1], not {self.fraction}")
        days = math.ceil(total_seconds_late / DAY)
        return min(score, score * self.fraction * days)


class ZeroWhenLate(LateSubmissionPlugin):
    """A late notebook scores zero: the penalty is its whole score."""

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        return score if total_seconds_late > 0 else 0.0
