"""Weekly power schedule of a smart blackboard, with holidays and make-up school days.

A schedule is a JSON object (the `schedule` config field and the `set_schedule` command's arg):

    {"week": [["12345", "07:30", "12:00"], ["12345", "13:30", "17:30"]],
     "holidays": ["2026-10-01", ["2026-10-02", "2026-10-07"]],
     "makeup": [["2026-10-11", 5]]}

`week` lists on-periods: the days they apply to (digits 1 Monday .. 7 Sunday), the on time and the off
time, "HH:MM" or "HH:MM:SS" in the school's local time, off later than on ("24:00" is midnight). A
holiday (a date, or an inclusive [first, last] range) has no on-periods. A make-up day (China's
weekend school days) follows the plan of the weekday given. The schedule needs only the device's clock
and runs while the gateway and broker are away.
"""

DAY_S = 86400
MAX_PERIODS = 32
MAX_HOLIDAYS = 128
# How far ahead the next switch is looked for; a longer gap means the schedule never switches.
LOOKAHEAD_DAYS = 400


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _date(text):
    if not isinstance(text, str) or len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError("dates are YYYY-MM-DD, got %r" % (text,))
    try:
        y, m, d = int(text[:4]), int(text[5:7]), int(text[8:])
    except ValueError:
        raise ValueError("bad date %r" % (text,))
    if not (1 <= m <= 12 and 1 <= d <= 31):
        raise ValueError("bad date %r" % (text,))
    return days_from_civil(y, m, d)


def _clock(text):
    if not isinstance(text, str):
        raise ValueError("times are HH:MM or HH:MM:SS")
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError("times are HH:MM or HH:MM:SS, got %r" % (text,))
    try:
        h, m = int(parts[0]), int(parts[1])
        s = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise ValueError("bad time %r" % (text,))
    if not (0 <= m < 60 and 0 <= s < 60 and 0 <= h <= 24) or (h == 24 and (m or s)):
        raise ValueError("bad time %r" % (text,))
    return h * 3600 + m * 60 + s


class Schedule:
    """A validated schedule; ValueError says what is wrong with the spec."""

    def __init__(self, spec, tz_min=480):
        if not isinstance(spec, dict):
            raise ValueError("a schedule is an object")
        for key in spec:
            if key not in ("week", "holidays", "makeup"):
                raise ValueError("unknown schedule field %r" % (key,))
        self.tz_s = tz_min * 60
        week = spec.get("week", [])
        if not isinstance(week, list) or len(week) > MAX_PERIODS:
            raise ValueError("week must be a list of at most %d periods" % MAX_PERIODS)
        # periods[weekday 0..6] -> sorted (on, off) seconds of the day
        self.periods = [[] for _ in range(7)]
        for item in week:
            if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
                raise ValueError("a period is [days, on, off]")
            on, off = _clock(item[1]), _clock(item[2])
            if off <= on:
                raise ValueError("period %s-%s ends before it starts" % (item[1], item[2]))
            if not item[0]:
                raise ValueError("a period needs days")
            for ch in item[0]:
                if ch not in "1234567":
                    raise ValueError("days are digits 1 (Monday) to 7 (Sunday)")
                self.periods[int(ch) - 1].append((on, off))
        for day in self.periods:
            day.sort()
        self.holidays = []
        holidays = spec.get("holidays", [])
        if not isinstance(holidays, list) or len(holidays) > MAX_HOLIDAYS:
            raise ValueError("holidays must be a list of at most %d entries" % MAX_HOLIDAYS)
        for item in holidays:
            if isinstance(item, list) and len(item) == 2:
                first, last = _date(item[0]), _date(item[1])
            else:
                first = last = _date(item)
            if last < first:
                raise ValueError("holiday range ends before it starts")
            self.holidays.append((first, last))
        self.makeup = {}
        makeup = spec.get("makeup", [])
        if not isinstance(makeup, list) or len(makeup) > MAX_HOLIDAYS:
            raise ValueError("makeup must be a list of at most %d entries" % MAX_HOLIDAYS)
        for item in makeup:
            if (not isinstance(item, list) or len(item) != 2 or isinstance(item[1], bool)
                    or not isinstance(item[1], int) or not 1 <= item[1] <= 7):
                raise ValueError("a make-up day is [date, weekday 1-7]")
            self.makeup[_date(item[0])] = item[1] - 1

    def _day_periods(self, day):
        for first, last in self.holidays:
            if first <= day <= last:
                return ()
        weekday = self.makeup.get(day)
        if weekday is None:
            weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        return self.periods[weekday]

    def state(self, t):
        """(on, next switch) at Unix time `t`: whether the board should be on, and the Unix time at
        which that next changes (None if it never does within LOOKAHEAD_DAYS)."""
        local = int(t) + self.tz_s
        day = local // DAY_S
        sec = local - day * DAY_S
        on = False
        for start, end in self._day_periods(day):
            if start <= sec < end:
                on = True
        for ahead in range(LOOKAHEAD_DAYS):
            base = (day + ahead) * DAY_S
            for start, end in self._day_periods(day + ahead):
                for edge in (start, end):
                    at = base + edge
                    if at > local and self._on_at(at) != on:
                        return on, at - self.tz_s
        return on, None

    def _on_at(self, local):
        day = local // DAY_S
        sec = local - day * DAY_S
        for start, end in self._day_periods(day):
            if start <= sec < end:
                return True
        return False
