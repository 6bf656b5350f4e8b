"""Glia under chaos (`make chaos`): a seeded random schedule of overlapping faults under
concurrent load, a recorded history, and a checker for lost and duplicated effects."""
