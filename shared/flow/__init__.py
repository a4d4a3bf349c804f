"""Flow control: pausing job types, and global concurrency and rate limits per type.

- settings.py: what applies to each type (code defaults, run-time overrides), cached per instance;
- slots.py: concurrency slots, leased like a running attempt, and the jobs waiting for one (woken
  when a slot is given back);
- rate.py: start times reserved in a sliding log, so a rate-limited job waits exactly once (and
  is woken to take a new one if the limit changes meanwhile);
- waiters.py: the hidden messages of waiting jobs, named so that whoever frees room wakes them;
- parking.py: the jobs of a paused type, set aside until it is resumed;
- control.py: what the worker asks before it claims a job.
"""
