"""Holding a finished job's results against ground truth, and the intervals on its counts.

`labels` reads damage labels as their producers publish them (UNOSAT damage-site points,
xBD building polygons, any polygon layer with a class field); `join` marks footprints by
labels; `metrics` scores the marks; `intervals` puts an interval on every damaged-building
count; `run.validate` is `ruinmap validate`.
"""
