"""How late a change can become visible to readers, and the change feed's overlap that follows from it.

A change carries the instant the writer read from the clock (a state's `since`, a subject's `flags_changed_at`),
but readers see it only once its transaction commits, a little later. A change feed that handed out "now" as the
next cursor would then miss a change whose instant lies before that cursor but whose commit came after the read:
a withdrawal the marketing system would never hear of. So writers keep the gap bounded (`WRITE_WINDOW`: the
ledger rolls back a decision whose transaction outlasts it; the desk reads the clock as the last step before its
write), and the feed hands out a cursor `FEED_OVERLAP` in the past, so the next poll reads again every change that
could still have been in flight. A change may be reported twice; the feed reports answers, not events, so a
repeat is harmless. The instants come from the servers' clocks: servers that write to one database must keep them
in step (NTP) to well within `WRITE_WINDOW`.
"""

from __future__ import annotations

from datetime import timedelta

WRITE_WINDOW = timedelta(seconds=30)
FEED_OVERLAP = 2 * WRITE_WINDOW  # the window, and as much again for the commit itself
