"""Recurring schedules: a job submitted at every fire time of a cron expression in a time zone.

- cron.py: the expression and the time zone, daylight saving included: when a schedule fires;
- schedule.py: the record, its policies (overlap, catch-up) and its pure changes;
- store.py: the rows in Table Storage, indexed by next fire time in the same transaction;
- firing.py: a pass over the due index range, one job per fire time whatever crashes or races;
- service.py, routes.py, contract.py: the API (`/api/schedules`).

The scheduler's timer (function_app.py) and the reconciler both call `ScheduleService.fire_due`.
"""
